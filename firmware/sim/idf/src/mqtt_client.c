/*
 * mqtt_client.c — esp-mqtt's client API (espressif/mqtt, mqtt_client.h) on the virtual
 * ESP32-S3, over Debian's libmosquitto (MQTT 3.1.1) and OpenSSL for mqtts://.
 *
 * What the firmware can observe is esp-mqtt's (read from espressif/esp-mqtt mqtt_client.c):
 *   - esp_mqtt_client_start() creates the task "mqtt_task"; every event handler runs in it.
 *   - Connecting: MQTT_EVENT_BEFORE_CONNECT, then MQTT_EVENT_CONNECTED; a transport
 *     failure (TCP, TLS) gives MQTT_EVENT_ERROR (MQTT_ERROR_TYPE_TCP_TRANSPORT) and
 *     MQTT_EVENT_DISCONNECTED, a refused CONNACK MQTT_EVENT_ERROR
 *     (MQTT_ERROR_TYPE_CONNECTION_REFUSED, connect_return_code) and MQTT_EVENT_DISCONNECTED;
 *     a lost connection MQTT_EVENT_ERROR and MQTT_EVENT_DISCONNECTED. The next attempt
 *     comes network.reconnect_timeout_ms (default 10 s, virtual time) later, unless
 *     network.disable_auto_reconnect.
 *   - esp_mqtt_client_publish(): 0 for QoS 0, the msg_id for QoS 1/2, -1 on failure and for
 *     QoS 0 while disconnected; MQTT_EVENT_PUBLISHED (msg_id) when QoS 1/2 is acknowledged.
 *   - esp_mqtt_client_stop() sends DISCONNECT, dispatches no event, and fails from the
 *     client's own task.
 *   - mqtts:// verifies the broker against broker.verification.certificate (PEM) or, with
 *     crt_bundle_attach, the board's certificate bundle; the name checked is common_name or
 *     the host, unless skip_cert_common_name_check. No verification option: the TLS
 *     connection fails, as esp-tls refuses it.
 * Like the board's HTTP client, the network reaches loopback addresses only, and only once
 * the station holds an IP address.
 */
#define _POSIX_C_SOURCE 200809L

#include "mqtt_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sim_board.h"

ESP_EVENT_DEFINE_BASE(MQTT_EVENTS);

static const char *TAG = "mqtt_client";

#define MQTT_HANDLERS_MAX 8
#define MQTT_INFLIGHT_MAX 32
#define MQTT_RECONNECT_DEFAULT_MS 10000
#define MQTT_NETWORK_TIMEOUT_DEFAULT_MS 10000
#define MQTT_KEEPALIVE_DEFAULT_S 120
#define MQTT_LOOP_SLICE_MS 50
#define MQTT_TASK_STACK_BYTES 6144
#define MQTT_TASK_PRIORITY 5

typedef struct {
    esp_mqtt_event_id_t event;
    esp_event_handler_t handler;
    void *arg;
} mqtt_handler_t;

struct esp_mqtt_client {
    char *host;
    int port;
    bool tls;
    char *ca_pem;
    bool use_bundle;
    bool skip_cn_check;
    char *common_name;
    char *client_id;
    char *username;
    char *password;
    int keepalive_s;
    bool clean_session;
    int reconnect_ms;
    int network_timeout_ms;
    bool auto_reconnect;

    struct mosquitto *mosq;
    SSL_CTX *ssl_ctx;
    pthread_mutex_t lock; /* handlers, started */
    pthread_cond_t stopped_cond;
    mqtt_handler_t handlers[MQTT_HANDLERS_MAX];
    size_t handler_count;
    /* Held across mosquitto_publish() and while mqtt_task matches acknowledgements, so a
     * PUBACK that overtakes publish()'s return still finds its msg_id recorded. */
    pthread_mutex_t publish_lock;
    int inflight[MQTT_INFLIGHT_MAX]; /* QoS > 0 msg_ids not yet acknowledged */
    int acked[MQTT_INFLIGHT_MAX];    /* mids libmosquitto reported sent/acknowledged (task only) */
    size_t acked_count;
    bool tls_unusable; /* mqtts:// without a usable verification option */
    TaskHandle_t task;
    bool started;
    volatile bool run;
    volatile bool connected;
    /* Set by libmosquitto's callbacks, which run in mqtt_task (mosquitto_loop). */
    int connack_rc; /* -1: no CONNACK yet */
    bool link_lost;
    esp_mqtt_error_codes_t error;
    esp_mqtt_event_t event;
};

static pthread_once_t s_lib_once = PTHREAD_ONCE_INIT;

static void mqtt_lib_init(void) {
    mosquitto_lib_init();
}

static char *mqtt_strdup(const char *s) {
    return s != NULL ? strdup(s) : NULL;
}

/* ------------------------------------------------------------- events -- */

static void mqtt_dispatch(esp_mqtt_client_handle_t client, esp_mqtt_event_id_t id, int msg_id) {
    mqtt_handler_t matches[MQTT_HANDLERS_MAX];
    size_t count = 0;
    pthread_mutex_lock(&client->lock);
    for (size_t i = 0; i < client->handler_count; i++) {
        if (client->handlers[i].event == MQTT_EVENT_ANY || client->handlers[i].event == id) {
            matches[count++] = client->handlers[i];
        }
    }
    pthread_mutex_unlock(&client->lock);
    esp_mqtt_event_t *event = &client->event;
    memset(event, 0, sizeof(*event));
    event->event_id = id;
    event->client = client;
    event->msg_id = msg_id;
    event->error_handle = &client->error;
    event->protocol_ver = MQTT_PROTOCOL_V_3_1_1;
    for (size_t i = 0; i < count; i++) {
        matches[i].handler(matches[i].arg, MQTT_EVENTS, id, event);
    }
}

static void mqtt_dispatch_error(esp_mqtt_client_handle_t client, esp_mqtt_error_type_t type,
                                esp_mqtt_connect_return_code_t code) {
    memset(&client->error, 0, sizeof(client->error));
    client->error.error_type = type;
    client->error.connect_return_code = code;
    client->error.esp_tls_last_esp_err = type == MQTT_ERROR_TYPE_TCP_TRANSPORT ? ESP_FAIL : ESP_OK;
    mqtt_dispatch(client, MQTT_EVENT_ERROR, 0);
}

/* ------------------------------------------------- libmosquitto callbacks -- */

static void mqtt_on_connect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    esp_mqtt_client_handle_t client = obj;
    client->connack_rc = rc;
}

static void mqtt_on_disconnect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    (void)rc;
    esp_mqtt_client_handle_t client = obj;
    client->link_lost = true;
}

/* Runs in mqtt_task (mosquitto_loop): QoS 0 sent, or QoS 1/2 acknowledged. */
static void mqtt_on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    esp_mqtt_client_handle_t client = obj;
    if (client->acked_count < MQTT_INFLIGHT_MAX) {
        client->acked[client->acked_count++] = mid;
    }
}

/* MQTT_EVENT_PUBLISHED for the acknowledged QoS 1/2 messages (QoS 0 gets none, as in
 * esp-mqtt). Called by mqtt_task outside libmosquitto. */
static void mqtt_dispatch_acks(esp_mqtt_client_handle_t client) {
    int ours[MQTT_INFLIGHT_MAX];
    size_t count = 0;
    pthread_mutex_lock(&client->publish_lock);
    for (size_t a = 0; a < client->acked_count; a++) {
        for (size_t i = 0; i < MQTT_INFLIGHT_MAX; i++) {
            if (client->inflight[i] == client->acked[a]) {
                client->inflight[i] = 0;
                ours[count++] = client->acked[a];
                break;
            }
        }
    }
    client->acked_count = 0;
    pthread_mutex_unlock(&client->publish_lock);
    for (size_t i = 0; i < count; i++) {
        mqtt_dispatch(client, MQTT_EVENT_PUBLISHED, ours[i]);
    }
}

/* ---------------------------------------------------------------- TLS -- */

static bool mqtt_tls_load_pem(X509_STORE *store, const char *pem) {
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) {
        return false;
    }
    size_t added = 0;
    X509 *cert;
    while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, cert) == 1) {
            added++;
        }
        X509_free(cert);
    }
    ERR_clear_error(); /* the end of the PEM text */
    BIO_free(bio);
    return added > 0;
}

static bool mqtt_tls_setup(esp_mqtt_client_handle_t client) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return false;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    bool trusted = false;
    if (client->ca_pem != NULL) {
        trusted = mqtt_tls_load_pem(SSL_CTX_get_cert_store(ctx), client->ca_pem);
        if (!trusted) {
            ESP_LOGE(TAG, "broker.verification.certificate holds no PEM certificate");
        }
    } else if (client->use_bundle) {
        const char *bundle = sim_board_bundle_ca_file();
        trusted = bundle[0] != '\0' ? SSL_CTX_load_verify_locations(ctx, bundle, NULL) == 1
                                    : SSL_CTX_set_default_verify_paths(ctx) == 1;
    } else {
        ESP_LOGE(TAG, "No server verification option set in esp_mqtt_client_config_t");
    }
    if (!trusted) {
        SSL_CTX_free(ctx);
        return false;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!client->skip_cn_check) {
        const char *name = client->common_name != NULL ? client->common_name : client->host;
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
        if (is_ip) { /* an address is checked against the certificate's IP SANs */
            X509_VERIFY_PARAM_set1_ip_asc(param, name);
        } else {
            X509_VERIFY_PARAM_set1_host(param, name, 0);
        }
    }
    client->ssl_ctx = ctx;
    /* This context alone: no cafile/capath defaults layered on it by libmosquitto. */
    return mosquitto_int_option(client->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) ==
               MOSQ_ERR_SUCCESS &&
           mosquitto_void_option(client->mosq, MOSQ_OPT_SSL_CTX, ctx) == MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------- the task -- */

static bool mqtt_host_is_loopback(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0;
}

/* Waits virtual_ms (virtual time) or until stopped. */
static void mqtt_wait(esp_mqtt_client_handle_t client, int virtual_ms) {
    for (int waited = 0; client->run && waited < virtual_ms; waited += MQTT_LOOP_SLICE_MS) {
        vTaskDelay(pdMS_TO_TICKS(MQTT_LOOP_SLICE_MS));
    }
}

/* One connection: connect, wait for the CONNACK, serve it until lost or stopped. */
static void mqtt_connection(esp_mqtt_client_handle_t client) {
    mqtt_dispatch(client, MQTT_EVENT_BEFORE_CONNECT, 0);
    const char *refused = !sim_wifi_has_ip() ? "no network: the station has no IP"
                          : !mqtt_host_is_loopback(client->host)
                              ? "the virtual board reaches loopback addresses only"
                          : client->tls_unusable ? "TLS: no usable server verification"
                                                 : NULL;
    if (refused != NULL) {
        ESP_LOGE(TAG, "Error transport connect (%s)", refused);
        mqtt_dispatch_error(client, MQTT_ERROR_TYPE_TCP_TRANSPORT, MQTT_CONNECTION_ACCEPTED);
        mqtt_dispatch(client, MQTT_EVENT_DISCONNECTED, 0);
        return;
    }
    client->connack_rc = -1;
    client->link_lost = false;
    client->acked_count = 0;
    int rc = mosquitto_connect(client->mosq, client->host, client->port, client->keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS) {
        ESP_LOGE(TAG, "Error transport connect (%s)",
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        mqtt_dispatch_error(client, MQTT_ERROR_TYPE_TCP_TRANSPORT, MQTT_CONNECTION_ACCEPTED);
        mqtt_dispatch(client, MQTT_EVENT_DISCONNECTED, 0);
        return;
    }
    for (int waited = 0; client->run && client->connack_rc < 0 && !client->link_lost &&
                         waited < client->network_timeout_ms;
         waited += MQTT_LOOP_SLICE_MS) {
        if (mosquitto_loop(client->mosq, MQTT_LOOP_SLICE_MS, 1) != MOSQ_ERR_SUCCESS) {
            client->link_lost = true; /* e.g. the TLS handshake failed */
        }
    }
    if (client->connack_rc != 0) {
        if (client->connack_rc > 0) {
            ESP_LOGE(TAG, "MQTT connect failed: %s", mosquitto_connack_string(client->connack_rc));
            mqtt_dispatch_error(client, MQTT_ERROR_TYPE_CONNECTION_REFUSED,
                                (esp_mqtt_connect_return_code_t)client->connack_rc);
        } else if (client->run) {
            /* libmosquitto finishes the TLS handshake in its loop: a refused certificate
             * closes the connection here. */
            if (client->link_lost) {
                ESP_LOGE(TAG, "Error transport connect (closed before CONNACK: %s)",
                         client->tls ? "TLS handshake failed" : "refused by the broker");
            } else {
                ESP_LOGE(TAG, "MQTT connect failed: no CONNACK within %d ms",
                         client->network_timeout_ms);
            }
            mqtt_dispatch_error(client, MQTT_ERROR_TYPE_TCP_TRANSPORT, MQTT_CONNECTION_ACCEPTED);
        }
        mosquitto_disconnect(client->mosq);
        mosquitto_loop(client->mosq, 0, 1);
        if (client->run) {
            mqtt_dispatch(client, MQTT_EVENT_DISCONNECTED, 0);
        }
        return;
    }
    client->connected = true;
    mqtt_dispatch(client, MQTT_EVENT_CONNECTED, 0);
    while (client->run && !client->link_lost) {
        rc = mosquitto_loop(client->mosq, MQTT_LOOP_SLICE_MS, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            client->link_lost = true;
        }
        mqtt_dispatch_acks(client);
    }
    client->connected = false;
    if (client->run) { /* lost, not stopped */
        ESP_LOGE(TAG, "connection to the broker lost");
        mqtt_dispatch_error(client, MQTT_ERROR_TYPE_TCP_TRANSPORT, MQTT_CONNECTION_ACCEPTED);
        mqtt_dispatch(client, MQTT_EVENT_DISCONNECTED, 0);
    } else { /* esp_mqtt_client_stop(): DISCONNECT, no event */
        mosquitto_disconnect(client->mosq);
        mosquitto_loop(client->mosq, MQTT_LOOP_SLICE_MS, 1);
    }
}

static void mqtt_task(void *arg) {
    esp_mqtt_client_handle_t client = arg;
    while (client->run) {
        mqtt_connection(client);
        if (!client->auto_reconnect) {
            break;
        }
        mqtt_wait(client, client->reconnect_ms);
    }
    pthread_mutex_lock(&client->lock);
    client->started = false;
    client->run = false;
    pthread_cond_broadcast(&client->stopped_cond);
    pthread_mutex_unlock(&client->lock);
    vTaskDelete(NULL);
}

/* ----------------------------------------------------------------- API -- */

/* mqtt://host[:port] or mqtts://host[:port] (an IPv6 host in brackets). */
static bool mqtt_parse_uri(esp_mqtt_client_handle_t client, const char *uri) {
    const char *rest;
    if (strncmp(uri, "mqtt://", 7) == 0) {
        rest = uri + 7;
        client->port = 1883;
    } else if (strncmp(uri, "mqtts://", 8) == 0) {
        rest = uri + 8;
        client->tls = true;
        client->port = 8883;
    } else {
        ESP_LOGE(TAG, "unsupported URI scheme: %s", uri);
        return false;
    }
    const char *host_end;
    const char *port_sep;
    if (rest[0] == '[') {
        host_end = strchr(rest, ']');
        if (host_end == NULL) {
            return false;
        }
        rest++;
        port_sep = host_end[1] == ':' ? host_end + 1 : NULL;
    } else {
        host_end = rest + strcspn(rest, ":/");
        port_sep = *host_end == ':' ? host_end : NULL;
    }
    if (host_end == rest) {
        ESP_LOGE(TAG, "no host in the URI: %s", uri);
        return false;
    }
    client->host = strndup(rest, (size_t)(host_end - rest));
    if (port_sep != NULL) {
        char *end;
        long port = strtol(port_sep + 1, &end, 10);
        if (end == port_sep + 1 || port <= 0 || port > 65535 || (*end != '\0' && *end != '/')) {
            ESP_LOGE(TAG, "bad port in the URI: %s", uri);
            return false;
        }
        client->port = (int)port;
    }
    return client->host != NULL;
}

static void mqtt_free(esp_mqtt_client_handle_t client) {
    if (client->mosq != NULL) {
        mosquitto_destroy(client->mosq);
    }
    if (client->ssl_ctx != NULL) {
        SSL_CTX_free(client->ssl_ctx);
    }
    free(client->host);
    free(client->ca_pem);
    free(client->common_name);
    free(client->client_id);
    free(client->username);
    free(client->password);
    pthread_mutex_destroy(&client->lock);
    pthread_mutex_destroy(&client->publish_lock);
    pthread_cond_destroy(&client->stopped_cond);
    free(client);
}

esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t *config) {
    if (config == NULL) {
        return NULL;
    }
    pthread_once(&s_lib_once, mqtt_lib_init);
    esp_mqtt_client_handle_t client = calloc(1, sizeof(*client));
    if (client == NULL) {
        return NULL;
    }
    pthread_mutex_init(&client->lock, NULL);
    pthread_mutex_init(&client->publish_lock, NULL);
    pthread_cond_init(&client->stopped_cond, NULL);
    bool ok;
    if (config->broker.address.uri != NULL) {
        ok = mqtt_parse_uri(client, config->broker.address.uri);
    } else {
        ok = config->broker.address.hostname != NULL &&
             (config->broker.address.transport == MQTT_TRANSPORT_OVER_TCP ||
              config->broker.address.transport == MQTT_TRANSPORT_OVER_SSL);
        if (ok) {
            client->host = strdup(config->broker.address.hostname);
            client->tls = config->broker.address.transport == MQTT_TRANSPORT_OVER_SSL;
            client->port = client->tls ? 8883 : 1883;
        } else {
            ESP_LOGE(TAG, "no broker URI, or a hostname without a TCP/SSL transport");
        }
    }
    if (ok && config->broker.address.port != 0) {
        client->port = (int)config->broker.address.port;
    }
    const struct verification_t *verify = &config->broker.verification;
    if (verify->certificate != NULL) {
        client->ca_pem = verify->certificate_len > 0
                             ? strndup(verify->certificate, verify->certificate_len)
                             : strdup(verify->certificate);
    }
    client->use_bundle = verify->crt_bundle_attach != NULL;
    client->skip_cn_check = verify->skip_cert_common_name_check;
    client->common_name = mqtt_strdup(verify->common_name);
    client->client_id =
        config->credentials.set_null_client_id ? NULL : mqtt_strdup(config->credentials.client_id);
    if (client->client_id == NULL && !config->credentials.set_null_client_id) {
        /* esp-mqtt's default: ESP32_ and the last 3 bytes of the MAC, in hex */
        char id[16];
        snprintf(id, sizeof(id), "ESP32_%06X", (unsigned)(sim_board_now_us() & 0xFFFFFF));
        client->client_id = strdup(id);
    }
    client->username = mqtt_strdup(config->credentials.username);
    client->password = mqtt_strdup(config->credentials.authentication.password);
    client->keepalive_s =
        config->session.keepalive > 0 ? config->session.keepalive : MQTT_KEEPALIVE_DEFAULT_S;
    client->clean_session = !config->session.disable_clean_session;
    client->reconnect_ms = config->network.reconnect_timeout_ms > 0
                               ? config->network.reconnect_timeout_ms
                               : MQTT_RECONNECT_DEFAULT_MS;
    client->network_timeout_ms = config->network.timeout_ms > 0 ? config->network.timeout_ms
                                                                : MQTT_NETWORK_TIMEOUT_DEFAULT_MS;
    client->auto_reconnect = !config->network.disable_auto_reconnect;
    if (ok) {
        client->mosq = mosquitto_new(client->client_id, client->clean_session, client);
        ok = client->mosq != NULL;
    }
    if (ok) {
        mosquitto_threaded_set(client->mosq, true); /* the loop runs in mqtt_task */
        mosquitto_int_option(client->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_connect_callback_set(client->mosq, mqtt_on_connect);
        mosquitto_disconnect_callback_set(client->mosq, mqtt_on_disconnect);
        mosquitto_publish_callback_set(client->mosq, mqtt_on_publish);
        if (client->username != NULL) {
            ok = mosquitto_username_pw_set(client->mosq, client->username, client->password) ==
                 MOSQ_ERR_SUCCESS;
        }
    }
    if (ok && client->tls) {
        /* A CA that cannot be used fails the connection, not init (esp-tls at connect). */
        client->tls_unusable = !mqtt_tls_setup(client);
    }
    if (!ok) {
        mqtt_free(client);
        return NULL;
    }
    return client;
}

esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t client, esp_mqtt_event_id_t event,
                                         esp_event_handler_t event_handler,
                                         void *event_handler_arg) {
    if (client == NULL || event_handler == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&client->lock);
    esp_err_t err = ESP_ERR_NO_MEM;
    if (client->handler_count < MQTT_HANDLERS_MAX) {
        client->handlers[client->handler_count++] =
            (mqtt_handler_t){.event = event, .handler = event_handler, .arg = event_handler_arg};
        err = ESP_OK;
    }
    pthread_mutex_unlock(&client->lock);
    return err;
}

esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t client) {
    if (client == NULL) {
        ESP_LOGE(TAG, "Client was not initialized");
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&client->lock);
    if (client->started) {
        pthread_mutex_unlock(&client->lock);
        ESP_LOGE(TAG, "Client has started");
        return ESP_FAIL;
    }
    client->started = true;
    client->run = true;
    BaseType_t created = xTaskCreate(mqtt_task, "mqtt_task", MQTT_TASK_STACK_BYTES, client,
                                     MQTT_TASK_PRIORITY, &client->task);
    if (created != pdPASS) {
        client->started = false;
        client->run = false;
    }
    pthread_mutex_unlock(&client->lock);
    if (created != pdPASS) {
        ESP_LOGE(TAG, "Error create mqtt task");
        return ESP_FAIL;
    }
    return ESP_OK;
}

esp_err_t esp_mqtt_client_stop(esp_mqtt_client_handle_t client) {
    if (client == NULL) {
        ESP_LOGE(TAG, "Client was not initialized");
        return ESP_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&client->lock);
    if (!client->started) {
        pthread_mutex_unlock(&client->lock);
        ESP_LOGW(TAG, "Client asked to stop, but was not started");
        return ESP_FAIL;
    }
    if (xTaskGetCurrentTaskHandle() == client->task) {
        pthread_mutex_unlock(&client->lock);
        ESP_LOGE(TAG, "Client cannot be stopped from MQTT task");
        return ESP_FAIL;
    }
    client->run = false;
    while (client->started) {
        pthread_cond_wait(&client->stopped_cond, &client->lock);
    }
    pthread_mutex_unlock(&client->lock);
    return ESP_OK;
}

esp_err_t esp_mqtt_client_destroy(esp_mqtt_client_handle_t client) {
    if (client == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    if (client->started) {
        esp_mqtt_client_stop(client);
    }
    mqtt_free(client);
    return ESP_OK;
}

int esp_mqtt_client_publish(esp_mqtt_client_handle_t client, const char *topic, const char *data,
                            int len, int qos, int retain) {
    if (client == NULL) {
        ESP_LOGE(TAG, "Client was not initialized");
        return -1;
    }
    if (topic == NULL || qos < 0 || qos > 2) {
        return -1;
    }
    if (len <= 0 && data != NULL) {
        len = (int)strlen(data);
    }
    if (!client->connected && qos == 0) {
        ESP_LOGW(TAG, "Publish: Losing qos0 data when client not connected");
        return -1;
    }
    pthread_mutex_lock(&client->publish_lock);
    int mid = 0;
    int rc = mosquitto_publish(client->mosq, &mid, topic, len, data, qos, retain != 0);
    if (rc == MOSQ_ERR_SUCCESS && qos > 0) {
        for (size_t i = 0; i < MQTT_INFLIGHT_MAX; i++) {
            if (client->inflight[i] == 0) {
                client->inflight[i] = mid;
                break;
            }
        }
    }
    pthread_mutex_unlock(&client->publish_lock);
    if (rc != MOSQ_ERR_SUCCESS) {
        ESP_LOGW(TAG, "publish to %s failed: %s", topic, mosquitto_strerror(rc));
        return -1;
    }
    return qos > 0 ? mid : 0;
}
