/*
 * esp_http_client.c — components/esp_http_client's API over libcurl (multi interface).
 *
 * Each handle owns one curl easy handle, so the connection (and TLS session) to its host
 * stays open between requests while the server allows it (keep-alive), as one
 * esp_http_client handle does. esp_http_client_open() prepares a request;
 * esp_http_client_write() collects the body; esp_http_client_fetch_headers() sends it and
 * waits for the response head, calling the event handler with HTTP_EVENT_ON_HEADER for
 * every response header; esp_http_client_read() pulls the body through a bounded buffer
 * (the transfer pauses while it is full). Redirects are never followed by libcurl: with
 * disable_auto_redirect the caller sees the 3xx (ESP-IDF's rule), otherwise perform()
 * follows up to max_redirection_count. Waits are bounded by timeout_ms of real time
 * (network time does not scale with --time-scale): a connect or response-head wait that
 * runs out returns -ESP_ERR_HTTP_EAGAIN, as the ESP-IDF transport's read timeout does.
 * TLS trusts cert_pem only, or the certificate bundle (sim_board_bundle_ca_file()).
 */
#define _POSIX_C_SOURCE 200809L
#include "esp_http_client.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "esp_crt_bundle.h"
#include "esp_log.h"
#include "sim_board.h"

static const char *TAG = "HTTP_CLIENT";

#define HTTP_BUFFER_BYTES (32u * 1024u)
#define HTTP_POLL_MS 20
#define HTTP_DEFAULT_TIMEOUT_MS 5000
#define HTTP_HEADER_MAX_BYTES 1024
#define HTTP_DEFAULT_MAX_REDIRECTS 10

typedef struct http_header {
    char *key;
    char *value;
    struct http_header *next;
} http_header_t;

struct esp_http_client {
    CURL *easy;
    CURLM *multi;
    bool in_multi;
    char *url;
    esp_http_client_method_t method;
    int timeout_ms;
    http_event_handle_cb event_handler;
    void *user_data;
    const char *cert_pem;
    bool use_bundle;
    bool disable_auto_redirect;
    int max_redirects;
    http_header_t *headers;
    const char *post_data; /* esp_http_client_set_post_field, not copied (as ESP-IDF) */
    int post_len;
    /* the request in flight */
    esp_http_state_t state;
    char *body;
    size_t body_len;
    size_t body_cap;
    struct curl_slist *curl_headers;
    /* the response */
    int status;
    int64_t content_length;
    bool head_complete;
    bool keep_alive;
    bool done;
    CURLcode result;
    uint8_t *buf;
    size_t buf_len;
    size_t buf_pos;
    bool paused;
    int64_t data_process;
    char error[CURL_ERROR_SIZE];
};

static uint64_t http_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void http_event(esp_http_client_handle_t client, esp_http_client_event_id_t id, char *key,
                       char *value, void *data, int data_len) {
    if (client->event_handler == NULL) {
        return;
    }
    esp_http_client_event_t event = {
        .event_id = id,
        .client = client,
        .data = data,
        .data_len = data_len,
        .user_data = client->user_data,
        .header_key = key,
        .header_value = value,
    };
    client->event_handler(&event);
}

static char *http_strdup(const char *s) {
    size_t len = strlen(s) + 1;
    char *copy = malloc(len);
    if (copy != NULL) {
        memcpy(copy, s, len);
    }
    return copy;
}

esp_http_client_handle_t esp_http_client_init(const esp_http_client_config_t *config) {
    static bool curl_ready;
    if (config == NULL || config->url == NULL) {
        return NULL;
    }
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = true;
    }
    esp_http_client_handle_t client = calloc(1, sizeof(*client));
    if (client == NULL) {
        return NULL;
    }
    client->easy = curl_easy_init();
    client->multi = curl_multi_init();
    client->url = http_strdup(config->url);
    client->buf = malloc(HTTP_BUFFER_BYTES);
    if (client->easy == NULL || client->multi == NULL || client->url == NULL ||
        client->buf == NULL) {
        esp_http_client_cleanup(client);
        return NULL;
    }
    client->method = config->method;
    client->timeout_ms = config->timeout_ms > 0 ? config->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    client->event_handler = config->event_handler;
    client->user_data = config->user_data;
    client->cert_pem = config->cert_pem;
    client->use_bundle = config->crt_bundle_attach != NULL;
    client->disable_auto_redirect = config->disable_auto_redirect;
    client->max_redirects = config->max_redirection_count > 0 ? config->max_redirection_count
                                                              : HTTP_DEFAULT_MAX_REDIRECTS;
    client->state = HTTP_STATE_INIT;
    client->content_length = -1;
    return client;
}

esp_err_t esp_http_client_cleanup(esp_http_client_handle_t client) {
    if (client == NULL) {
        return ESP_FAIL;
    }
    esp_http_client_close(client);
    for (http_header_t *h = client->headers; h != NULL;) {
        http_header_t *next = h->next;
        free(h->key);
        free(h->value);
        free(h);
        h = next;
    }
    if (client->easy != NULL) {
        curl_easy_cleanup(client->easy);
    }
    if (client->multi != NULL) {
        curl_multi_cleanup(client->multi);
    }
    free(client->url);
    free(client->buf);
    free(client->body);
    free(client);
    return ESP_OK;
}

esp_err_t esp_http_client_set_url(esp_http_client_handle_t client, const char *url) {
    if (client == NULL || url == NULL ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        return ESP_ERR_INVALID_ARG;
    }
    char *copy = http_strdup(url);
    if (copy == NULL) {
        return ESP_ERR_NO_MEM;
    }
    free(client->url);
    client->url = copy;
    return ESP_OK;
}

esp_err_t esp_http_client_set_method(esp_http_client_handle_t client,
                                     esp_http_client_method_t method) {
    if (client == NULL || method >= HTTP_METHOD_MAX) {
        return ESP_ERR_INVALID_ARG;
    }
    client->method = method;
    return ESP_OK;
}

esp_err_t esp_http_client_set_timeout_ms(esp_http_client_handle_t client, int timeout_ms) {
    if (client == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    client->timeout_ms = timeout_ms > 0 ? timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    return ESP_OK;
}

esp_err_t esp_http_client_set_post_field(esp_http_client_handle_t client, const char *data,
                                         int len) {
    if (client == NULL || len < 0) {
        return ESP_ERR_INVALID_ARG;
    }
    client->post_data = data;
    client->post_len = data != NULL ? len : 0;
    return ESP_OK;
}

/* ---------------------------------------------------------- request headers -- */

static http_header_t **http_header_find(esp_http_client_handle_t client, const char *key) {
    http_header_t **it = &client->headers;
    while (*it != NULL && strcasecmp((*it)->key, key) != 0) {
        it = &(*it)->next;
    }
    return it;
}

esp_err_t esp_http_client_set_header(esp_http_client_handle_t client, const char *key,
                                     const char *value) {
    if (client == NULL || key == NULL || value == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    char *copy = http_strdup(value);
    if (copy == NULL) {
        return ESP_ERR_NO_MEM;
    }
    http_header_t **it = http_header_find(client, key);
    if (*it != NULL) {
        free((*it)->value);
        (*it)->value = copy;
        return ESP_OK;
    }
    http_header_t *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->key = http_strdup(key)) == NULL) {
        free(h);
        free(copy);
        return ESP_ERR_NO_MEM;
    }
    h->value = copy;
    *it = h;
    return ESP_OK;
}

esp_err_t esp_http_client_get_header(esp_http_client_handle_t client, const char *key,
                                     char **value) {
    if (client == NULL || key == NULL || value == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    http_header_t **it = http_header_find(client, key);
    *value = *it != NULL ? (*it)->value : NULL;
    return ESP_OK;
}

esp_err_t esp_http_client_delete_header(esp_http_client_handle_t client, const char *key) {
    if (client == NULL || key == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    http_header_t **it = http_header_find(client, key);
    if (*it != NULL) {
        http_header_t *h = *it;
        *it = h->next;
        free(h->key);
        free(h->value);
        free(h);
    }
    return ESP_OK;
}

/* ------------------------------------------------------------- the wire -- */

static size_t http_header_cb(char *data, size_t size, size_t count, void *user) {
    esp_http_client_handle_t client = user;
    size_t len = size * count;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        client->status = sp != NULL ? atoi(sp + 1) : 0;
        client->content_length = -1;
        client->keep_alive = memcmp(data, "HTTP/1.0", 8) != 0;
        return len;
    }
    if (len <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        if (client->status >= 200 || client->status == 101) {
            client->head_complete = true;
            http_event(client, HTTP_EVENT_ON_HEADERS_COMPLETE, NULL, NULL, NULL, 0);
        }
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL || len >= HTTP_HEADER_MAX_BYTES) {
        return len;
    }
    char line[HTTP_HEADER_MAX_BYTES];
    memcpy(line, data, len);
    line[len] = '\0';
    char *key = line;
    char *value = line + (colon - data);
    *value++ = '\0';
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    size_t vlen = strlen(value);
    while (vlen > 0 &&
           (value[vlen - 1] == '\r' || value[vlen - 1] == '\n' || value[vlen - 1] == ' ')) {
        value[--vlen] = '\0';
    }
    if (strcasecmp(key, "Content-Length") == 0) {
        client->content_length = strtoll(value, NULL, 10);
    } else if (strcasecmp(key, "Connection") == 0) {
        client->keep_alive = strcasecmp(value, "close") != 0;
    }
    http_event(client, HTTP_EVENT_ON_HEADER, key, value, NULL, 0);
    return len;
}

static size_t http_write_cb(char *data, size_t size, size_t count, void *user) {
    esp_http_client_handle_t client = user;
    size_t len = size * count;
    if (client->buf_pos == client->buf_len) {
        client->buf_pos = 0;
        client->buf_len = 0;
    }
    if (client->buf_len + len > HTTP_BUFFER_BYTES) {
        if (client->buf_pos > 0) {
            memmove(client->buf, client->buf + client->buf_pos, client->buf_len - client->buf_pos);
            client->buf_len -= client->buf_pos;
            client->buf_pos = 0;
        }
        if (client->buf_len + len > HTTP_BUFFER_BYTES) {
            client->paused = true;
            return CURL_WRITEFUNC_PAUSE; /* resumed by esp_http_client_read once drained */
        }
    }
    memcpy(client->buf + client->buf_len, data, len);
    client->buf_len += len;
    return len;
}

/* Drives the transfer until `ready` holds, it ends, or timeout_ms pass without progress:
 * ESP_OK, or ESP_ERR_HTTP_EAGAIN on the timeout. */
static esp_err_t http_pump(esp_http_client_handle_t client,
                           bool (*ready)(esp_http_client_handle_t)) {
    uint64_t deadline_ms = http_now_ms() + (uint64_t)client->timeout_ms;
    while (!ready(client) && !client->done) {
        if (client->paused) {
            client->paused = false;
            curl_easy_pause(client->easy, CURLPAUSE_CONT);
            continue;
        }
        int running = 0;
        size_t before = client->buf_len;
        curl_multi_perform(client->multi, &running);
        CURLMsg *msg = NULL;
        int left = 0;
        while ((msg = curl_multi_info_read(client->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                client->done = true;
                client->result = msg->data.result;
            }
        }
        if (client->buf_len != before) {
            deadline_ms = http_now_ms() + (uint64_t)client->timeout_ms;
        }
        if (ready(client) || client->done) {
            break;
        }
        if (http_now_ms() >= deadline_ms) {
            return ESP_ERR_HTTP_EAGAIN;
        }
        curl_multi_poll(client->multi, NULL, 0, HTTP_POLL_MS, NULL);
    }
    return ESP_OK;
}

static bool http_head_ready(esp_http_client_handle_t client) {
    return client->head_complete;
}

static bool http_data_ready(esp_http_client_handle_t client) {
    return client->buf_pos < client->buf_len;
}

static void http_detach(esp_http_client_handle_t client) {
    if (client->in_multi) {
        curl_multi_remove_handle(client->multi, client->easy);
        client->in_multi = false;
    }
    curl_slist_free_all(client->curl_headers);
    client->curl_headers = NULL;
}

esp_err_t esp_http_client_open(esp_http_client_handle_t client, int write_len) {
    if (client == NULL || write_len < 0) {
        return ESP_ERR_INVALID_ARG;
    }
    http_detach(client);
    client->body_len = 0;
    if ((size_t)write_len > client->body_cap) {
        char *bigger = realloc(client->body, (size_t)write_len);
        if (bigger == NULL) {
            return ESP_ERR_NO_MEM;
        }
        client->body = bigger;
        client->body_cap = (size_t)write_len;
    }
    client->status = -1;
    client->content_length = -1;
    client->head_complete = false;
    client->keep_alive = false;
    client->done = false;
    client->result = CURLE_OK;
    client->buf_len = 0;
    client->buf_pos = 0;
    client->paused = false;
    client->data_process = 0;
    client->state = HTTP_STATE_REQ_COMPLETE_HEADER;
    return ESP_OK;
}

int esp_http_client_write(esp_http_client_handle_t client, const char *buffer, int len) {
    if (client == NULL || buffer == NULL || len < 0 ||
        client->state != HTTP_STATE_REQ_COMPLETE_HEADER) {
        return -1;
    }
    size_t room = client->body_cap - client->body_len;
    size_t n = (size_t)len < room ? (size_t)len : room;
    memcpy(client->body + client->body_len, buffer, n);
    client->body_len += n;
    return (int)n;
}

/* The virtual board's network reaches this machine only (loopback): no DNS, no
 * other address. */
static bool http_host_is_loopback(const char *url) {
    const char *host = strstr(url, "://");
    if (host == NULL) {
        return false;
    }
    host += 3;
    return strncmp(host, "127.", 4) == 0 || strncmp(host, "localhost", 9) == 0 ||
           strncmp(host, "[::1]", 5) == 0;
}

static bool http_setup(esp_http_client_handle_t client) {
    static const char *const METHODS[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
    CURL *e = client->easy;
    curl_easy_reset(e); /* keeps live connections and the TLS session cache */
    char line[HTTP_HEADER_MAX_BYTES];
    for (const http_header_t *h = client->headers; h != NULL; h = h->next) {
        snprintf(line, sizeof(line), "%s: %s", h->key, h->value);
        client->curl_headers = curl_slist_append(client->curl_headers, line);
    }
    client->curl_headers = curl_slist_append(client->curl_headers, "Expect:");
    client->curl_headers = curl_slist_append(client->curl_headers, "Accept:");
    if (!sim_wifi_has_ip()) {
        snprintf(client->error, sizeof(client->error), "no network: the station has no IP");
        return false;
    }
    if (!http_host_is_loopback(client->url)) {
        snprintf(client->error, sizeof(client->error),
                 "the virtual board reaches loopback addresses only: %s", client->url);
        return false;
    }
    curl_easy_setopt(e, CURLOPT_URL, client->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, client->curl_headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ESP32 HTTP Client/1.0");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)client->timeout_ms);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, client);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, client);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, client->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (client->method == HTTP_METHOD_HEAD) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (client->method != HTTP_METHOD_GET || client->body_len > 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, METHODS[client->method]);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)client->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, client->body_len > 0 ? client->body : "");
    }
    if (strncmp(client->url, "https://", 8) == 0) {
        if (client->cert_pem != NULL) {
            struct curl_blob blob = {.data = (void *)client->cert_pem,
                                     .len = strlen(client->cert_pem),
                                     .flags = CURL_BLOB_COPY};
            curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
        } else if (client->use_bundle && sim_board_bundle_ca_file()[0] != '\0') {
            curl_easy_setopt(e, CURLOPT_CAINFO, sim_board_bundle_ca_file());
        } else if (!client->use_bundle) {
            ESP_LOGE(TAG, "No server verification option set in esp_http_client_config_t");
            return false;
        }
    }
    return true;
}

static esp_err_t http_curl_err(CURLcode code) {
    switch (code) {
    case CURLE_OK:
        return ESP_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return ESP_ERR_HTTP_EAGAIN;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return ESP_ERR_HTTP_CONNECT;
    default:
        return ESP_FAIL;
    }
}

int64_t esp_http_client_fetch_headers(esp_http_client_handle_t client) {
    if (client == NULL || client->state < HTTP_STATE_REQ_COMPLETE_HEADER) {
        return ESP_FAIL;
    }
    if (client->state == HTTP_STATE_REQ_COMPLETE_HEADER) {
        if (!http_setup(client)) {
            ESP_LOGD(TAG, "%s", client->error);
            return -ESP_ERR_HTTP_CONNECT;
        }
        client->state = HTTP_STATE_REQ_COMPLETE_DATA;
        curl_multi_add_handle(client->multi, client->easy);
        client->in_multi = true;
    }
    esp_err_t err = http_pump(client, http_head_ready);
    if (err == ESP_ERR_HTTP_EAGAIN ||
        (!client->head_complete && client->result == CURLE_OPERATION_TIMEDOUT)) {
        ESP_LOGW(TAG, "Connection timed out before data was ready!");
        return -ESP_ERR_HTTP_EAGAIN;
    }
    if (!client->head_complete) {
        ESP_LOGD(TAG, "Connection failed: %s", client->error[0] ? client->error : "no response");
        return http_curl_err(client->result) == ESP_ERR_HTTP_CONNECT ? -ESP_ERR_HTTP_CONNECT
                                                                     : ESP_FAIL;
    }
    client->state = HTTP_STATE_RES_ON_DATA_START;
    http_event(client, HTTP_EVENT_ON_STATUS_CODE, NULL, NULL, NULL, 0);
    return client->content_length > 0 ? client->content_length : 0;
}

/* Like ESP-IDF's: fills `buffer` until `len` bytes or the end of the body. */
int esp_http_client_read(esp_http_client_handle_t client, char *buffer, int len) {
    if (client == NULL || buffer == NULL || len < 0) {
        return ESP_FAIL;
    }
    if (client->state < HTTP_STATE_RES_ON_DATA_START) {
        return 0;
    }
    int ridx = 0;
    while (ridx < len) {
        if (http_pump(client, http_data_ready) == ESP_ERR_HTTP_EAGAIN) {
            return ridx > 0 ? ridx : -ESP_ERR_HTTP_EAGAIN;
        }
        size_t available = client->buf_len - client->buf_pos;
        if (available == 0) {
            if (client->done && client->result != CURLE_OK) {
                ESP_LOGW(TAG, "transfer ended: %s", client->error);
                if (ridx == 0 && client->result == CURLE_OPERATION_TIMEDOUT) {
                    return -ESP_ERR_HTTP_EAGAIN;
                }
            } else {
                client->state = HTTP_STATE_RES_COMPLETE_DATA;
            }
            break;
        }
        size_t n = available < (size_t)(len - ridx) ? available : (size_t)(len - ridx);
        memcpy(buffer + ridx, client->buf + client->buf_pos, n);
        client->buf_pos += n;
        client->data_process += (int64_t)n;
        http_event(client, HTTP_EVENT_ON_DATA, NULL, NULL, buffer + ridx, (int)n);
        ridx += (int)n;
    }
    return ridx;
}

int esp_http_client_get_status_code(esp_http_client_handle_t client) {
    return client != NULL ? client->status : -1;
}

int64_t esp_http_client_get_content_length(esp_http_client_handle_t client) {
    return client != NULL ? client->content_length : -1;
}

bool esp_http_client_is_complete_data_received(esp_http_client_handle_t client) {
    if (client == NULL || !client->done || client->result != CURLE_OK ||
        client->buf_pos != client->buf_len) {
        return false;
    }
    return client->content_length < 0 || client->data_process == client->content_length;
}

bool esp_http_client_is_persistent_connection(esp_http_client_handle_t client) {
    return client != NULL && client->keep_alive;
}

esp_http_state_t esp_http_client_get_state(esp_http_client_handle_t client) {
    if (client == NULL) {
        return HTTP_STATE_UNINIT;
    }
    long sockets = 0;
    /* A kept-alive connection counts as connected between requests. */
    if (client->state == HTTP_STATE_INIT && client->easy != NULL &&
        curl_easy_getinfo(client->easy, CURLINFO_NUM_CONNECTS, &sockets) == CURLE_OK &&
        client->done && client->keep_alive) {
        return HTTP_STATE_CONNECTED;
    }
    return client->state;
}

esp_err_t esp_http_client_flush_response(esp_http_client_handle_t client, int *len) {
    if (client == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    int total = 0;
    char sink[512];
    for (;;) {
        int n = esp_http_client_read(client, sink, sizeof(sink));
        if (n < 0) {
            return ESP_FAIL;
        }
        if (n == 0) {
            break;
        }
        total += n;
    }
    if (len != NULL) {
        *len = total;
    }
    return ESP_OK;
}

esp_err_t esp_http_client_close(esp_http_client_handle_t client) {
    if (client == NULL) {
        return ESP_FAIL;
    }
    bool was_open = client->state >= HTTP_STATE_REQ_COMPLETE_HEADER;
    /* Removing an unfinished transfer closes its connection; a finished one stays cached. */
    http_detach(client);
    if (was_open && !(client->done && client->keep_alive)) {
        curl_easy_reset(client->easy);
        http_event(client, HTTP_EVENT_DISCONNECTED, NULL, NULL, NULL, 0);
    }
    client->state = HTTP_STATE_INIT;
    return ESP_OK;
}

esp_err_t esp_http_client_perform(esp_http_client_handle_t client) {
    if (client == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    for (int hop = 0; hop <= client->max_redirects; hop++) {
        esp_err_t err = esp_http_client_open(client, client->post_len);
        if (err == ESP_OK && client->post_len > 0 &&
            esp_http_client_write(client, client->post_data, client->post_len) !=
                client->post_len) {
            err = ESP_ERR_HTTP_WRITE_DATA;
        }
        int64_t head = err == ESP_OK ? esp_http_client_fetch_headers(client) : 0;
        if (err == ESP_OK && head < 0) {
            err = head == -ESP_ERR_HTTP_EAGAIN ? ESP_ERR_HTTP_EAGAIN : ESP_ERR_HTTP_FETCH_HEADER;
        }
        if (err != ESP_OK) {
            esp_http_client_close(client);
            return err;
        }
        if (esp_http_client_flush_response(client, NULL) != ESP_OK) {
            esp_http_client_close(client);
            return ESP_FAIL;
        }
        char *location = NULL;
        int status = client->status;
        bool redirect =
            status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
        if (redirect && !client->disable_auto_redirect &&
            curl_easy_getinfo(client->easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
            location != NULL) {
            char *next = http_strdup(location);
            esp_http_client_close(client);
            if (next == NULL) {
                return ESP_ERR_NO_MEM;
            }
            free(client->url);
            client->url = next;
            continue;
        }
        if (!esp_http_client_is_complete_data_received(client) || !client->keep_alive) {
            esp_http_client_close(client);
        } else {
            http_detach(client);
            client->state = HTTP_STATE_INIT;
        }
        http_event(client, HTTP_EVENT_ON_FINISH, NULL, NULL, NULL, 0);
        return ESP_OK;
    }
    return ESP_ERR_HTTP_MAX_REDIRECT;
}

esp_err_t esp_crt_bundle_attach(void *conf) {
    (void)conf;
    return ESP_OK;
}
