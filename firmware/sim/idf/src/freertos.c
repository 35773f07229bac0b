/*
 * freertos.c — FreeRTOS tasks, delays, queues, mutexes and event groups on POSIX threads.
 * Every timeout is in ticks of 1 ms on the virtual board's clock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "sim_board.h"
#include "sim_clock.h"

/* --------------------------------------------------------------- waiting -- */

static void wait_init(pthread_cond_t *cond) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* A wait of ticks_to_wait on the virtual clock (sim_clock.h): registered with the clock unless
 * it is a poll (0) or forever (portMAX_DELAY), so the clock does not run past it before its
 * task has run. */
typedef struct {
    sim_clock_wait_t clock;
    bool timed;
} rtos_wait_t;

static void rtos_wait_begin(rtos_wait_t *wait, TickType_t ticks_to_wait) {
    wait->timed = ticks_to_wait != 0 && ticks_to_wait != portMAX_DELAY;
    if (wait->timed) {
        sim_clock_wait_begin_ms(&wait->clock, ticks_to_wait);
    }
}

static void rtos_wait_end(rtos_wait_t *wait) {
    if (wait->timed) {
        sim_clock_wait_end(&wait->clock);
    }
}

/* Waits on cond until woken (true) or the wait's instant has come (false). */
static bool wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, rtos_wait_t *wait) {
    if (!wait->timed) {
        pthread_cond_wait(cond, mutex);
        return true;
    }
    for (;;) {
        if (sim_clock_wait_reached(&wait->clock)) {
            return false;
        }
        struct timespec recheck = sim_clock_wait_recheck(&wait->clock);
        if (pthread_cond_timedwait(cond, mutex, &recheck) != ETIMEDOUT) {
            return true;
        }
    }
}

/* ----------------------------------------------------------------- tasks -- */

typedef struct {
    TaskFunction_t code;
    void *arg;
    char name[16];
} task_start_t;

static void *task_trampoline(void *p) {
    task_start_t start = *(task_start_t *)p;
    free(p);
    pthread_setname_np(pthread_self(), start.name);
    start.code(start.arg);
    return NULL; /* a FreeRTOS task must not return; here it just ends */
}

BaseType_t xTaskCreate(TaskFunction_t task_code, const char *name, uint32_t stack_depth,
                       void *parameters, UBaseType_t priority, TaskHandle_t *created_task) {
    (void)stack_depth;
    (void)priority;
    task_start_t *start = calloc(1, sizeof(*start));
    if (start == NULL) {
        return pdFAIL;
    }
    start->code = task_code;
    start->arg = parameters;
    strncpy(start->name, name != NULL ? name : "task", sizeof(start->name) - 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, task_trampoline, start);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(start);
        return pdFAIL;
    }
    if (created_task != NULL) {
        *created_task = (TaskHandle_t)(uintptr_t)thread;
    }
    return pdPASS;
}

void vTaskDelete(TaskHandle_t task) {
    if (task == NULL) {
        pthread_exit(NULL);
    }
}

TaskHandle_t xTaskGetCurrentTaskHandle(void) {
    return (TaskHandle_t)(uintptr_t)pthread_self();
}

void vTaskDelay(TickType_t ticks) {
    sim_clock_sleep_ms(ticks);
}

TickType_t xTaskGetTickCount(void) {
    return (TickType_t)(sim_board_now_us() / 1000);
}

/* ---------------------------------------------------------------- queues -- */

struct QueueDefinition {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t item_size;
    size_t length;
    size_t head;
    size_t count;
    bool is_mutex;
    bool mutex_taken;
    uint8_t items[];
};

QueueHandle_t xQueueCreate(UBaseType_t length, UBaseType_t item_size) {
    if (length == 0) {
        return NULL;
    }
    QueueHandle_t q = calloc(1, sizeof(*q) + (size_t)length * item_size);
    if (q == NULL) {
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    wait_init(&q->changed);
    q->item_size = item_size;
    q->length = length;
    return q;
}

void vQueueDelete(QueueHandle_t queue) {
    if (queue != NULL) {
        pthread_mutex_destroy(&queue->lock);
        pthread_cond_destroy(&queue->changed);
        free(queue);
    }
}

BaseType_t xQueueSend(QueueHandle_t q, const void *item, TickType_t ticks_to_wait) {
    rtos_wait_t wait;
    rtos_wait_begin(&wait, ticks_to_wait);
    pthread_mutex_lock(&q->lock);
    while (q->count == q->length) {
        if (ticks_to_wait == 0 || !wait_until(&q->changed, &q->lock, &wait)) {
            if (q->count == q->length) {
                pthread_mutex_unlock(&q->lock);
                rtos_wait_end(&wait);
                return pdFALSE;
            }
        }
    }
    memcpy(q->items + ((q->head + q->count) % q->length) * q->item_size, item, q->item_size);
    q->count++;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    rtos_wait_end(&wait);
    return pdTRUE;
}

BaseType_t xQueueReceive(QueueHandle_t q, void *buffer, TickType_t ticks_to_wait) {
    rtos_wait_t wait;
    rtos_wait_begin(&wait, ticks_to_wait);
    pthread_mutex_lock(&q->lock);
    while (q->count == 0) {
        if (ticks_to_wait == 0 || !wait_until(&q->changed, &q->lock, &wait)) {
            if (q->count == 0) {
                pthread_mutex_unlock(&q->lock);
                rtos_wait_end(&wait);
                return pdFALSE;
            }
        }
    }
    memcpy(buffer, q->items + q->head * q->item_size, q->item_size);
    q->head = (q->head + 1) % q->length;
    q->count--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    rtos_wait_end(&wait);
    return pdTRUE;
}

UBaseType_t uxQueueMessagesWaiting(QueueHandle_t q) {
    pthread_mutex_lock(&q->lock);
    UBaseType_t count = q->count;
    pthread_mutex_unlock(&q->lock);
    return count;
}

/* --------------------------------------------------------------- mutexes -- */

SemaphoreHandle_t xSemaphoreCreateMutex(void) {
    SemaphoreHandle_t m = xQueueCreate(1, 0);
    if (m != NULL) {
        m->is_mutex = true;
    }
    return m;
}

BaseType_t xSemaphoreTake(SemaphoreHandle_t m, TickType_t ticks_to_wait) {
    rtos_wait_t wait;
    rtos_wait_begin(&wait, ticks_to_wait);
    pthread_mutex_lock(&m->lock);
    while (m->mutex_taken) {
        if (ticks_to_wait == 0 || !wait_until(&m->changed, &m->lock, &wait)) {
            if (m->mutex_taken) {
                pthread_mutex_unlock(&m->lock);
                rtos_wait_end(&wait);
                return pdFALSE;
            }
        }
    }
    m->mutex_taken = true;
    pthread_mutex_unlock(&m->lock);
    rtos_wait_end(&wait);
    return pdTRUE;
}

BaseType_t xSemaphoreGive(SemaphoreHandle_t m) {
    pthread_mutex_lock(&m->lock);
    bool was_taken = m->mutex_taken;
    m->mutex_taken = false;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    return was_taken ? pdTRUE : pdFALSE;
}

void vSemaphoreDelete(SemaphoreHandle_t m) {
    vQueueDelete(m);
}

/* ---------------------------------------------------------- event groups -- */

struct EventGroupDef_t {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    EventBits_t bits;
};

EventGroupHandle_t xEventGroupCreate(void) {
    EventGroupHandle_t g = calloc(1, sizeof(*g));
    if (g != NULL) {
        pthread_mutex_init(&g->lock, NULL);
        wait_init(&g->changed);
    }
    return g;
}

EventBits_t xEventGroupSetBits(EventGroupHandle_t g, EventBits_t bits) {
    pthread_mutex_lock(&g->lock);
    g->bits |= bits;
    EventBits_t now = g->bits;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->lock);
    return now;
}

EventBits_t xEventGroupClearBits(EventGroupHandle_t g, EventBits_t bits) {
    pthread_mutex_lock(&g->lock);
    EventBits_t before = g->bits;
    g->bits &= ~bits;
    pthread_mutex_unlock(&g->lock);
    return before;
}

EventBits_t xEventGroupGetBits(EventGroupHandle_t g) {
    pthread_mutex_lock(&g->lock);
    EventBits_t bits = g->bits;
    pthread_mutex_unlock(&g->lock);
    return bits;
}

EventBits_t xEventGroupWaitBits(EventGroupHandle_t g, EventBits_t bits_to_wait_for,
                                BaseType_t clear_on_exit, BaseType_t wait_for_all_bits,
                                TickType_t ticks_to_wait) {
    rtos_wait_t wait;
    rtos_wait_begin(&wait, ticks_to_wait);
    pthread_mutex_lock(&g->lock);
    for (;;) {
        EventBits_t have = g->bits & bits_to_wait_for;
        bool met = wait_for_all_bits ? have == bits_to_wait_for : have != 0;
        if (met || ticks_to_wait == 0 || !wait_until(&g->changed, &g->lock, &wait)) {
            EventBits_t bits = g->bits;
            have = bits & bits_to_wait_for;
            met = wait_for_all_bits ? have == bits_to_wait_for : have != 0;
            if (met && clear_on_exit) {
                g->bits &= ~bits_to_wait_for;
            }
            if (met || ticks_to_wait == 0 || ticks_to_wait != portMAX_DELAY) {
                pthread_mutex_unlock(&g->lock);
                rtos_wait_end(&wait);
                return bits;
            }
        }
    }
}
