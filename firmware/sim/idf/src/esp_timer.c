/*
 * esp_timer.c — esp_timer_get_time() and software timers: one "esp_timer" task runs the
 * callbacks of expired timers in expiry order, as ESP_TIMER_TASK dispatch does.
 */
#define _GNU_SOURCE
#include "esp_timer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "sim_board.h"
#include "sim_clock.h"

struct esp_timer {
    esp_timer_cb_t callback;
    void *arg;
    int64_t alarm_us; /* virtual time; -1 when not armed */
    uint64_t period_us;
    struct esp_timer *next;
};

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_changed;
static struct esp_timer *s_timers;
static bool s_task_started;

int64_t esp_timer_get_time(void) {
    return sim_board_now_us();
}

/* The task waits for the earliest alarm as a registered wait (sim_clock.h) that lasts until
 * that alarm's callback has returned, so the clock does not run past an alarm whose callback
 * has not run yet. */
static void *timer_task(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "esp_timer");
    sim_clock_wait_t wait;
    bool waiting = false;
    pthread_mutex_lock(&s_lock);
    for (;;) {
        struct esp_timer *due = NULL;
        for (struct esp_timer *t = s_timers; t != NULL; t = t->next) {
            if (t->alarm_us >= 0 && (due == NULL || t->alarm_us < due->alarm_us)) {
                due = t;
            }
        }
        if (waiting && (due == NULL || due->alarm_us != wait.until_us)) {
            sim_clock_wait_end(&wait); /* stopped, or an earlier alarm came */
            waiting = false;
        }
        if (due == NULL) {
            pthread_cond_wait(&s_changed, &s_lock);
            continue;
        }
        if (!waiting) {
            sim_clock_wait_begin(&wait, due->alarm_us);
            waiting = true;
        }
        if (!sim_clock_wait_reached(&wait)) {
            struct timespec recheck = sim_clock_wait_recheck(&wait);
            pthread_cond_timedwait(&s_changed, &s_lock, &recheck);
            continue;
        }
        due->alarm_us = due->period_us > 0 ? due->alarm_us + (int64_t)due->period_us : -1;
        esp_timer_cb_t callback = due->callback;
        void *cb_arg = due->arg;
        pthread_mutex_unlock(&s_lock);
        callback(cb_arg);
        sim_clock_wait_end(&wait);
        waiting = false;
        pthread_mutex_lock(&s_lock);
    }
    return NULL;
}

esp_err_t esp_timer_create(const esp_timer_create_args_t *create_args,
                           esp_timer_handle_t *out_handle) {
    if (create_args == NULL || create_args->callback == NULL || out_handle == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    struct esp_timer *timer = calloc(1, sizeof(*timer));
    if (timer == NULL) {
        return ESP_ERR_NO_MEM;
    }
    timer->callback = create_args->callback;
    timer->arg = create_args->arg;
    timer->alarm_us = -1;
    pthread_mutex_lock(&s_lock);
    if (!s_task_started) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&s_changed, &attr);
        pthread_condattr_destroy(&attr);
        pthread_t thread;
        if (pthread_create(&thread, NULL, timer_task, NULL) != 0) {
            pthread_mutex_unlock(&s_lock);
            free(timer);
            return ESP_ERR_NO_MEM;
        }
        pthread_detach(thread);
        s_task_started = true;
    }
    timer->next = s_timers;
    s_timers = timer;
    pthread_mutex_unlock(&s_lock);
    *out_handle = timer;
    return ESP_OK;
}

static esp_err_t timer_arm(esp_timer_handle_t timer, uint64_t after_us, uint64_t period_us) {
    if (timer == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_lock);
    if (timer->alarm_us >= 0) {
        pthread_mutex_unlock(&s_lock);
        return ESP_ERR_INVALID_STATE; /* already running */
    }
    timer->alarm_us = sim_board_now_us() + (int64_t)after_us;
    timer->period_us = period_us;
    pthread_cond_broadcast(&s_changed);
    pthread_mutex_unlock(&s_lock);
    return ESP_OK;
}

esp_err_t esp_timer_start_once(esp_timer_handle_t timer, uint64_t timeout_us) {
    return timer_arm(timer, timeout_us, 0);
}

esp_err_t esp_timer_start_periodic(esp_timer_handle_t timer, uint64_t period) {
    return timer_arm(timer, period, period);
}

esp_err_t esp_timer_stop(esp_timer_handle_t timer) {
    if (timer == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_lock);
    bool armed = timer->alarm_us >= 0;
    timer->alarm_us = -1;
    pthread_mutex_unlock(&s_lock);
    return armed ? ESP_OK : ESP_ERR_INVALID_STATE;
}

esp_err_t esp_timer_delete(esp_timer_handle_t timer) {
    if (timer == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_lock);
    if (timer->alarm_us >= 0) {
        pthread_mutex_unlock(&s_lock);
        return ESP_ERR_INVALID_STATE;
    }
    for (struct esp_timer **it = &s_timers; *it != NULL; it = &(*it)->next) {
        if (*it == timer) {
            *it = timer->next;
            break;
        }
    }
    pthread_mutex_unlock(&s_lock);
    free(timer);
    return ESP_OK;
}
