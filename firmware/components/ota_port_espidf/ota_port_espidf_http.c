/*
 * ota_port_espidf_http.c — HTTP(S) of ota_port.h on esp_http_client.
 *
 * One esp_http_client handle is kept for the origin (scheme://host:port) of the
 * last request and reused while requests go to that origin, so a download of
 * many Range requests costs one TLS handshake (keep-alive). The handle is
 * replaced when the origin changes: esp_http_client picks its transport (TCP or
 * SSL) once per handle.
 *
 * Response headers are captured from HTTP_EVENT_ON_HEADER (esp_http_client_get_header
 * reads request headers). Redirects (301/302/303/307/308) are followed here, as
 * esp_https_ota.c does, with three extra rules: never https -> http, the bearer
 * token only goes to the origin it was given for, and 303 (or 301/302 after a
 * POST) continues as GET.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "esp_err.h"
#include "esp_http_client.h"
#include "esp_log.h"
#include "sdkconfig.h"
#if CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
#include "esp_crt_bundle.h"
#endif

#include "ota_http_head.h"
#include "ota_port.h"
#include "ota_port_espidf.h"
#include "ota_port_espidf_http_util.h"
#include "ota_port_espidf_priv.h"

static const char *TAG = OTA_PORT_ESPIDF_TAG;

#define HTTP_MAX_REDIRECTS 5
#define HTTP_URL_MAX_BYTES 512
#define HTTP_ORIGIN_MAX_BYTES OTA_PORT_ESPIDF_HTTP_UTIL_ORIGIN_MAX_BYTES
#define HTTP_HEADER_VALUE_MAX_BYTES 160
#define HTTP_RX_BUFFER_BYTES 2048
#define HTTP_TX_BUFFER_BYTES 1024
#define HTTP_DEFAULT_TIMEOUT_MS 10000u

struct ota_port_http {
    esp_http_client_handle_t client;
    bool open;
};

/* What HTTP_EVENT_ON_HEADER fills in for the request in flight. */
typedef struct {
    ota_port_http_response_t *response;
    char location[HTTP_URL_MAX_BYTES];
    char content_range[HTTP_HEADER_VALUE_MAX_BYTES];
} http_capture_t;

static struct {
    esp_http_client_handle_t client;
    char origin[HTTP_ORIGIN_MAX_BYTES];
    char *ca_cert_pem;
    http_capture_t capture;
    ota_port_http_t request; /* one request at a time (ota_port.h) */
} s_http;

/* Copies src when it fits; an over-long value becomes "" (refused, never truncated). */
static void http_copy(char *dst, size_t cap, const char *src) {
    if (src == NULL || strlen(src) >= cap) {
        dst[0] = '\0';
        return;
    }
    memcpy(dst, src, strlen(src) + 1);
}

static esp_err_t http_event_handler(esp_http_client_event_t *event) {
    if (event->event_id != HTTP_EVENT_ON_HEADER || event->header_key == NULL ||
        event->header_value == NULL) {
        return ESP_OK;
    }
    http_capture_t *capture = &s_http.capture;
    const char *key = event->header_key;
    const char *value = event->header_value;
    if (strcasecmp(key, "Location") == 0) {
        http_copy(capture->location, sizeof(capture->location), value);
    } else if (strcasecmp(key, "Content-Range") == 0) {
        http_copy(capture->content_range, sizeof(capture->content_range), value);
    } else if (capture->response == NULL) {
        return ESP_OK;
    } else {
        /* ETag, X-Firmware-Url, X-Device-Config: over-long values are refused, never truncated. */
        ota_http_head_header(capture->response, key, strlen(key), value, strlen(value));
    }
    return ESP_OK;
}

static void http_drop_client(void) {
    if (s_http.client != NULL) {
        esp_http_client_close(s_http.client);
        esp_http_client_cleanup(s_http.client);
        s_http.client = NULL;
    }
    s_http.origin[0] = '\0';
}

/* The kept handle if it serves this URL's origin, else a new one. */
static ota_status_t http_client_for(const char *url, uint32_t timeout_ms, bool *reused) {
    char origin[HTTP_ORIGIN_MAX_BYTES];
    if (!ota_port_espidf_http_util_origin(url, origin, sizeof(origin))) {
        ESP_LOGE(TAG, "not an http(s) URL: %s", url);
        return OTA_ERR_INVALID_ARG;
    }
    if (s_http.client != NULL && strcmp(origin, s_http.origin) == 0) {
        *reused = esp_http_client_get_state(s_http.client) >= HTTP_STATE_CONNECTED;
        return OTA_OK;
    }
    http_drop_client();
    *reused = false;

    esp_http_client_config_t config = {
        .url = url,
        .timeout_ms = (int)timeout_ms,
        .event_handler = http_event_handler,
        .disable_auto_redirect = true,
        .max_authorization_retries = -1,
        .keep_alive_enable = true,
        .buffer_size = HTTP_RX_BUFFER_BYTES,
        .buffer_size_tx = HTTP_TX_BUFFER_BYTES,
    };
    if (ota_port_espidf_http_util_is_https(url)) {
        if (s_http.ca_cert_pem != NULL) {
            config.cert_pem = s_http.ca_cert_pem;
        } else {
#if CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
            config.crt_bundle_attach = esp_crt_bundle_attach;
#else
            ESP_LOGE(TAG, "https:// needs a provisioned CA (NVS key ca_cert)");
            return OTA_ERR_CONFIG;
#endif
        }
    }
    s_http.client = esp_http_client_init(&config);
    if (s_http.client == NULL) {
        return OTA_ERR_NO_MEM;
    }
    http_copy(s_http.origin, sizeof(s_http.origin), origin);
    return OTA_OK;
}

static ota_status_t http_set_headers(esp_http_client_handle_t client,
                                     const ota_port_http_request_t *request, bool is_post,
                                     bool send_token) {
    esp_err_t err = ESP_OK;
    char value[HTTP_HEADER_VALUE_MAX_BYTES];
    if (send_token && request->bearer_token != NULL && request->bearer_token[0] != '\0') {
        int n = snprintf(value, sizeof(value), "Bearer %s", request->bearer_token);
        if (n < 0 || (size_t)n >= sizeof(value)) {
            return OTA_ERR_INVALID_ARG;
        }
        err = esp_http_client_set_header(client, "Authorization", value);
    } else {
        esp_http_client_delete_header(client, "Authorization");
    }
    if (err == ESP_OK && request->range_start >= 0) {
        snprintf(value, sizeof(value), "bytes=%" PRId64 "-", request->range_start);
        err = esp_http_client_set_header(client, "Range", value);
    } else {
        esp_http_client_delete_header(client, "Range");
    }
    if (err == ESP_OK && is_post && request->content_type != NULL) {
        err = esp_http_client_set_header(client, "Content-Type", request->content_type);
    } else {
        esp_http_client_delete_header(client, "Content-Type");
    }
    return err == ESP_OK ? OTA_OK : OTA_ERR_NO_MEM;
}

/* Sends one request on the kept handle and reads the response head. */
static ota_status_t http_exchange(const ota_port_http_request_t *request, const char *url,
                                  bool is_post, bool send_token, uint32_t timeout_ms) {
    bool reused = false;
    ota_status_t status = http_client_for(url, timeout_ms, &reused);
    if (status != OTA_OK) {
        return status;
    }
    esp_http_client_handle_t client = s_http.client;
    if (esp_http_client_set_url(client, url) != ESP_OK) {
        return OTA_ERR_INVALID_ARG;
    }
    esp_http_client_set_method(client, is_post ? HTTP_METHOD_POST : HTTP_METHOD_GET);
    esp_http_client_set_timeout_ms(client, (int)timeout_ms);
    status = http_set_headers(client, request, is_post, send_token);
    if (status != OTA_OK) {
        return status;
    }
    const int body_len = is_post ? (int)request->body_len : 0;

    /* A kept-alive connection the server has since closed fails on first use: retry once. */
    for (int attempt = 0; attempt < 2; attempt++) {
        s_http.capture.location[0] = '\0';
        s_http.capture.content_range[0] = '\0';
        esp_err_t err = esp_http_client_open(client, body_len);
        int64_t head = -1;
        if (err == ESP_OK && body_len > 0) {
            const char *body = request->body;
            int left = body_len;
            while (left > 0) {
                int written = esp_http_client_write(client, body, left);
                if (written <= 0) {
                    err = ESP_ERR_HTTP_WRITE_DATA;
                    break;
                }
                body += written;
                left -= written;
            }
        }
        if (err == ESP_OK) {
            head = esp_http_client_fetch_headers(client);
            if (head == -ESP_ERR_HTTP_EAGAIN) {
                esp_http_client_close(client);
                ESP_LOGW(TAG, "no response from %s within %" PRIu32 " ms", s_http.origin,
                         timeout_ms);
                return OTA_ERR_TIMEOUT;
            }
            if (head < 0) {
                err = ESP_ERR_HTTP_FETCH_HEADER;
            }
        }
        if (err == ESP_OK) {
            return OTA_OK;
        }
        esp_http_client_close(client);
        if (!reused) {
            ESP_LOGW(TAG, "request to %s failed: %s", s_http.origin, esp_err_to_name(err));
            return OTA_ERR_HTTP_CONNECT;
        }
        reused = false;
    }
    return OTA_ERR_HTTP_CONNECT;
}

static bool http_is_redirect(int status) {
    return status == HttpStatus_MovedPermanently || status == HttpStatus_Found ||
           status == HttpStatus_SeeOther || status == HttpStatus_TemporaryRedirect ||
           status == HttpStatus_PermanentRedirect;
}

ota_status_t ota_port_espidf_init(const char *ca_cert_pem) {
    http_drop_client();
    free(s_http.ca_cert_pem);
    s_http.ca_cert_pem = NULL;
    if (ca_cert_pem != NULL && ca_cert_pem[0] != '\0') {
        s_http.ca_cert_pem = strdup(ca_cert_pem);
        if (s_http.ca_cert_pem == NULL) {
            return OTA_ERR_NO_MEM;
        }
    }
    return OTA_OK;
}

ota_status_t ota_port_http_open(const ota_port_http_request_t *request, ota_port_http_t **out,
                                ota_port_http_response_t *response) {
    if (request == NULL || out == NULL || response == NULL || request->url == NULL ||
        request->method == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    bool is_post = strcmp(request->method, "POST") == 0;
    if (!is_post && strcmp(request->method, "GET") != 0) {
        return OTA_ERR_INVALID_ARG;
    }
    if ((is_post && request->body == NULL && request->body_len > 0) ||
        request->body_len > (size_t)INT_MAX) {
        return OTA_ERR_INVALID_ARG;
    }
    if (s_http.request.open) {
        return OTA_ERR_BUSY;
    }
    char url[HTTP_URL_MAX_BYTES];
    char token_origin[HTTP_ORIGIN_MAX_BYTES];
    if (snprintf(url, sizeof(url), "%s", request->url) >= (int)sizeof(url) ||
        !ota_port_espidf_http_util_origin(url, token_origin, sizeof(token_origin))) {
        ESP_LOGE(TAG, "bad URL: %s", request->url);
        return OTA_ERR_INVALID_ARG;
    }
    const uint32_t timeout_ms =
        request->timeout_ms > 0 ? request->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;

    ota_http_head_reset(response);
    s_http.capture.response = response;
    ota_status_t status = OTA_ERR_HTTP_STATUS;
    for (int hop = 0; hop <= HTTP_MAX_REDIRECTS; hop++) {
        char origin[HTTP_ORIGIN_MAX_BYTES];
        ota_port_espidf_http_util_origin(url, origin, sizeof(origin));
        bool send_token = strcmp(origin, token_origin) == 0;
        ota_http_head_reset(response); /* each hop's head replaces the last */
        status = http_exchange(request, url, is_post, send_token, timeout_ms);
        if (status != OTA_OK) {
            break;
        }
        esp_http_client_handle_t client = s_http.client;
        int code = esp_http_client_get_status_code(client);
        if (!http_is_redirect(code)) {
            response->status = code;
            response->content_length = esp_http_client_get_content_length(client);
            if (response->content_length < 0) {
                response->content_length = -1;
            }
            ota_port_espidf_http_util_range_t range;
            ota_port_espidf_http_util_content_range(s_http.capture.content_range, &range);
            response->content_range_start = range.start;
            response->content_range_end = range.end;
            response->content_range_total = range.total;
            s_http.request.client = client;
            s_http.request.open = true;
            s_http.capture.response = NULL;
            *out = &s_http.request;
            return OTA_OK;
        }
        char next[HTTP_URL_MAX_BYTES];
        if (s_http.capture.location[0] == '\0' ||
            !ota_port_espidf_http_util_resolve(url, s_http.capture.location, next, sizeof(next))) {
            ESP_LOGE(TAG, "redirect %d without a usable Location", code);
            status = OTA_ERR_HTTP_STATUS;
            break;
        }
        if (ota_port_espidf_http_util_is_https(url) && !ota_port_espidf_http_util_is_https(next)) {
            ESP_LOGE(TAG, "refusing redirect from https to %s", next);
            status = OTA_ERR_HTTP_STATUS;
            break;
        }
        /* Drain the redirect body so the connection can carry the next request. */
        if (esp_http_client_flush_response(client, NULL) != ESP_OK) {
            esp_http_client_close(client);
        }
        ESP_LOGI(TAG, "HTTP %d redirect to %s", code, next);
        if (code == HttpStatus_SeeOther ||
            (is_post && (code == HttpStatus_MovedPermanently || code == HttpStatus_Found))) {
            is_post = false;
        }
        memcpy(url, next, sizeof(url));
        status = OTA_ERR_HTTP_STATUS;
    }
    s_http.capture.response = NULL;
    if (status == OTA_ERR_HTTP_STATUS) {
        ESP_LOGE(TAG, "too many redirects or bad redirect for %s", request->url);
    }
    return status;
}

ota_status_t ota_port_http_read(ota_port_http_t *http, void *buf, size_t cap, size_t *n_read) {
    if (http == NULL || !http->open || buf == NULL || n_read == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    *n_read = 0;
    if (cap == 0) {
        return OTA_OK;
    }
    int want = cap > (size_t)INT_MAX ? INT_MAX : (int)cap;
    int got = esp_http_client_read(http->client, buf, want);
    if (got > 0) {
        *n_read = (size_t)got;
        return OTA_OK;
    }
    if (got == -ESP_ERR_HTTP_EAGAIN) {
        return OTA_ERR_TIMEOUT;
    }
    if (got == 0 && esp_http_client_is_complete_data_received(http->client)) {
        return OTA_OK; /* end of body */
    }
    ESP_LOGW(TAG, "body ended early (read returned %d)", got);
    return got == 0 ? OTA_ERR_HTTP_TRUNCATED : OTA_ERR_IO;
}

void ota_port_http_close(ota_port_http_t *http) {
    if (http == NULL || !http->open) {
        return;
    }
    http->open = false;
    /* Keep the connection only if this response is fully consumed and the server allows it. */
    if (!esp_http_client_is_complete_data_received(http->client) ||
        !esp_http_client_is_persistent_connection(http->client)) {
        esp_http_client_close(http->client);
    }
}
