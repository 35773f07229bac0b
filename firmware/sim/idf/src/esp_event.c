/*
 * esp_event.c — the default event loop: esp_event_post() copies the event into a queue and
 * the "sys_evt" task calls the matching handlers, in registration order.
 */
#include "esp_event.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "freertos/queue.h"
#include "freertos/task.h"

#define EVENT_QUEUE_DEPTH 32
#define EVENT_DATA_MAX_BYTES 128
#define EVENT_HANDLERS_MAX 16

typedef struct {
    esp_event_base_t base;
    int32_t id;
    size_t len;
    uint8_t data[EVENT_DATA_MAX_BYTES];
} event_item_t;

typedef struct {
    esp_event_base_t base;
    int32_t id;
    esp_event_handler_t handler;
    void *arg;
} event_handler_entry_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static QueueHandle_t s_queue;
static event_handler_entry_t s_handlers[EVENT_HANDLERS_MAX];
static size_t s_handler_count;

static void event_loop_task(void *arg) {
    (void)arg;
    for (;;) {
        static event_item_t item; /* only this task receives */
        if (xQueueReceive(s_queue, &item, portMAX_DELAY) != pdTRUE) {
            continue;
        }
        event_handler_entry_t matches[EVENT_HANDLERS_MAX];
        size_t count = 0;
        pthread_mutex_lock(&s_lock);
        for (size_t i = 0; i < s_handler_count; i++) {
            const event_handler_entry_t *h = &s_handlers[i];
            if (strcmp(h->base, item.base) == 0 &&
                (h->id == ESP_EVENT_ANY_ID || h->id == item.id)) {
                matches[count++] = *h;
            }
        }
        pthread_mutex_unlock(&s_lock);
        for (size_t i = 0; i < count; i++) {
            matches[i].handler(matches[i].arg, item.base, item.id, item.len > 0 ? item.data : NULL);
        }
    }
}

esp_err_t esp_event_loop_create_default(void) {
    pthread_mutex_lock(&s_lock);
    if (s_queue != NULL) {
        pthread_mutex_unlock(&s_lock);
        return ESP_ERR_INVALID_STATE;
    }
    s_queue = xQueueCreate(EVENT_QUEUE_DEPTH, sizeof(event_item_t));
    pthread_mutex_unlock(&s_lock);
    if (s_queue == NULL) {
        return ESP_ERR_NO_MEM;
    }
    return xTaskCreate(event_loop_task, "sys_evt", 2304, NULL, 20, NULL) == pdPASS ? ESP_OK
                                                                                   : ESP_ERR_NO_MEM;
}

esp_err_t esp_event_handler_register(esp_event_base_t event_base, int32_t event_id,
                                     esp_event_handler_t event_handler, void *event_handler_arg) {
    if (event_base == NULL || event_handler == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&s_lock);
    if (s_handler_count == EVENT_HANDLERS_MAX) {
        pthread_mutex_unlock(&s_lock);
        return ESP_ERR_NO_MEM;
    }
    s_handlers[s_handler_count++] = (event_handler_entry_t){
        .base = event_base, .id = event_id, .handler = event_handler, .arg = event_handler_arg};
    pthread_mutex_unlock(&s_lock);
    return ESP_OK;
}

esp_err_t esp_event_handler_instance_register(esp_event_base_t event_base, int32_t event_id,
                                              esp_event_handler_t event_handler,
                                              void *event_handler_arg,
                                              esp_event_handler_instance_t *instance) {
    esp_err_t err =
        esp_event_handler_register(event_base, event_id, event_handler, event_handler_arg);
    if (err == ESP_OK && instance != NULL) {
        *instance = (esp_event_handler_instance_t)event_handler;
    }
    return err;
}

esp_err_t esp_event_post(esp_event_base_t event_base, int32_t event_id, const void *event_data,
                         size_t event_data_size, TickType_t ticks_to_wait) {
    if (s_queue == NULL) {
        return ESP_ERR_INVALID_STATE;
    }
    if (event_data_size > EVENT_DATA_MAX_BYTES) {
        return ESP_ERR_INVALID_ARG;
    }
    event_item_t item = {.base = event_base, .id = event_id, .len = event_data_size};
    if (event_data != NULL && event_data_size > 0) {
        memcpy(item.data, event_data, event_data_size);
    }
    return xQueueSend(s_queue, &item, ticks_to_wait) == pdTRUE ? ESP_OK : ESP_ERR_TIMEOUT;
}
