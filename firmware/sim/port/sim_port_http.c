/*
 * sim_port_http.c — ota_port.h HTTP(S) on libcurl's multi interface.
 *
 * One easy handle is reused for every request, so libcurl keeps the
 * connection (and TLS session) alive between requests like esp_http_client
 * with keep-alive. The body is pulled by ota_port_http_read(): the write
 * callback buffers what arrives and pauses the transfer while the buffer is
 * full, so memory stays bounded whatever the image size.
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ota_http_head.h"
#include "ota_port.h"
#include "sim_port_internal.h"

#define SIM_HTTP_BUFFER_BYTES (64u * 1024u)
#define SIM_HTTP_POLL_MS 50
#define SIM_HTTP_MAX_REDIRECTS 5L

struct ota_port_http {
    CURL *easy;
    struct curl_slist *headers;
    uint8_t *buf;
    size_t buf_len; /* bytes buffered */
    size_t buf_pos; /* bytes already handed out */
    size_t buf_cap;
    bool paused;
    bool done;
    CURLcode result;
    uint32_t timeout_ms;
    ota_port_http_response_t *response;
    char error[CURL_ERROR_SIZE];
};

static CURLM *sim_http_multi;
static CURL *sim_http_easy;
static char sim_http_ca_cert[512];
static char *sim_http_ca_pem;                       /* malloc'd copy, NULL: none */
static struct ota_port_http *sim_http_open_request; /* at most one at a time */
static uint64_t sim_http_requests;

void sim_http_init(const char *ca_cert) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(sim_http_ca_cert, sizeof(sim_http_ca_cert), "%s", ca_cert != NULL ? ca_cert : "");
}

void sim_port_set_ca_cert_pem(const char *pem) {
    free(sim_http_ca_pem);
    sim_http_ca_pem = NULL;
    if (pem != NULL && pem[0] != '\0') {
        size_t len = strlen(pem) + 1;
        sim_http_ca_pem = malloc(len);
        if (sim_http_ca_pem != NULL) {
            memcpy(sim_http_ca_pem, pem, len);
        }
    }
}

static uint64_t sim_http_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t sim_http_header_cb(char *data, size_t size, size_t count, void *user) {
    struct ota_port_http *http = user;
    size_t len = size * count;
    ota_http_head_line(http->response, data, len); /* bounded: data is not NUL-terminated */
    return len;
}

static size_t sim_http_write_cb(char *data, size_t size, size_t count, void *user) {
    struct ota_port_http *http = user;
    size_t len = size * count;
    if (http->buf_pos == http->buf_len) {
        http->buf_pos = 0;
        http->buf_len = 0;
    }
    if (http->buf_len > 0 && http->buf_len + len > http->buf_cap) {
        http->paused = true;
        return CURL_WRITEFUNC_PAUSE; /* resumed by ota_port_http_read once drained */
    }
    if (http->buf_len + len > http->buf_cap) {
        uint8_t *bigger = realloc(http->buf, http->buf_len + len);
        if (bigger == NULL) {
            return 0; /* aborts the transfer */
        }
        http->buf = bigger;
        http->buf_cap = http->buf_len + len;
    }
    memcpy(http->buf + http->buf_len, data, len);
    http->buf_len += len;
    return len;
}

/* Drives the transfer until body bytes are buffered or it ends; OTA_ERR_TIMEOUT
 * when nothing happens for timeout_ms. */
static ota_status_t sim_http_pump(struct ota_port_http *http) {
    uint64_t deadline_ms = sim_http_now_ms() + http->timeout_ms;
    while (http->buf_pos == http->buf_len && !http->done) {
        if (http->paused) {
            http->paused = false;
            curl_easy_pause(http->easy, CURLPAUSE_CONT);
            if (http->buf_pos != http->buf_len) {
                break;
            }
        }
        int running = 0;
        size_t before = http->buf_len;
        curl_multi_perform(sim_http_multi, &running);
        CURLMsg *msg = NULL;
        int left = 0;
        while ((msg = curl_multi_info_read(sim_http_multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == http->easy) {
                http->done = true;
                http->result = msg->data.result;
            }
        }
        if (http->buf_len != before || http->done) {
            break;
        }
        if (sim_http_now_ms() >= deadline_ms) {
            return OTA_ERR_TIMEOUT;
        }
        curl_multi_poll(sim_http_multi, NULL, 0, SIM_HTTP_POLL_MS, NULL);
    }
    return OTA_OK;
}

static ota_status_t sim_http_map_error(CURLcode code) {
    switch (code) {
    case CURLE_OK:
        return OTA_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SEND_ERROR:
        return OTA_ERR_HTTP_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return OTA_ERR_TIMEOUT;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return OTA_ERR_HTTP_TRUNCATED;
    case CURLE_OUT_OF_MEMORY:
        return OTA_ERR_NO_MEM;
    default:
        return OTA_ERR_IO;
    }
}

static void sim_http_free(struct ota_port_http *http) {
    if (http == NULL) {
        return;
    }
    curl_multi_remove_handle(sim_http_multi, http->easy);
    curl_slist_free_all(http->headers);
    free(http->buf);
    if (sim_http_open_request == http) {
        sim_http_open_request = NULL;
    }
    free(http);
}

static bool sim_http_setup(struct ota_port_http *http, const ota_port_http_request_t *request) {
    CURL *e = http->easy;
    curl_easy_reset(e); /* keeps live connections and the TLS session cache */
    char line[200];
    if (request->bearer_token != NULL && request->bearer_token[0] != '\0') {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", request->bearer_token);
        http->headers = curl_slist_append(http->headers, line);
    }
    if (request->content_type != NULL) {
        snprintf(line, sizeof(line), "Content-Type: %s", request->content_type);
        http->headers = curl_slist_append(http->headers, line);
    }
    http->headers = curl_slist_append(http->headers, "Expect:");
    char range[32];
    if (request->range_start >= 0) {
        snprintf(range, sizeof(range), "%lld-", (long long)request->range_start);
        curl_easy_setopt(e, CURLOPT_RANGE, range);
    }
    if (strcmp(request->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)request->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, request->body != NULL ? request->body : "");
    } else if (strcmp(request->method, "GET") != 0) {
        return false;
    }
    curl_easy_setopt(e, CURLOPT_URL, request->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* As the ESP-IDF port: never from https down to http on a redirect. */
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
                     strncmp(request->url, "https://", 8) == 0 ? "https" : "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, SIM_HTTP_MAX_REDIRECTS);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, http->headers);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)request->timeout_ms);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sim_http_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, http);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sim_http_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, http);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, http->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (sim_http_ca_pem != NULL) {
        struct curl_blob blob = {
            .data = sim_http_ca_pem, .len = strlen(sim_http_ca_pem), .flags = CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
    } else if (sim_http_ca_cert[0] != '\0') {
        curl_easy_setopt(e, CURLOPT_CAINFO, sim_http_ca_cert);
    }
    return true;
}

ota_status_t ota_port_http_open(const ota_port_http_request_t *request, ota_port_http_t **out,
                                ota_port_http_response_t *response) {
    if (request == NULL || out == NULL || response == NULL || request->url == NULL ||
        request->method == NULL) {
        return OTA_ERR_INVALID_ARG;
    }
    if (sim_http_open_request != NULL) {
        return OTA_ERR_BUSY;
    }
    if (sim_http_multi == NULL) {
        sim_http_multi = curl_multi_init();
        sim_http_easy = curl_easy_init();
        if (sim_http_multi == NULL || sim_http_easy == NULL) {
            return OTA_ERR_NO_MEM;
        }
    }
    struct ota_port_http *http = calloc(1, sizeof(*http));
    if (http == NULL) {
        return OTA_ERR_NO_MEM;
    }
    http->easy = sim_http_easy;
    http->timeout_ms = request->timeout_ms > 0 ? request->timeout_ms : 10000u;
    http->response = response;
    http->buf_cap = SIM_HTTP_BUFFER_BYTES;
    http->buf = malloc(http->buf_cap);
    ota_http_head_reset(response);
    if (http->buf == NULL || !sim_http_setup(http, request)) {
        ota_status_t status = http->buf == NULL ? OTA_ERR_NO_MEM : OTA_ERR_INVALID_ARG;
        curl_slist_free_all(http->headers);
        free(http->buf);
        free(http);
        return status;
    }
    sim_http_open_request = http;
    sim_http_requests++;
    curl_multi_add_handle(sim_http_multi, http->easy);
    ota_status_t status = sim_http_pump(http); /* until the first body bytes or the end */
    if (status == OTA_OK && http->done && http->result != CURLE_OK && http->buf_len == 0) {
        status = sim_http_map_error(http->result);
    }
    if (status != OTA_OK) {
        sim_http_free(http);
        return status;
    }
    long code = 0;
    curl_easy_getinfo(http->easy, CURLINFO_RESPONSE_CODE, &code);
    response->status = (int)code;
    *out = http;
    return OTA_OK;
}

ota_status_t ota_port_http_read(ota_port_http_t *http, void *buf, size_t cap, size_t *n_read) {
    *n_read = 0;
    ota_status_t status = sim_http_pump(http);
    if (status != OTA_OK) {
        return status;
    }
    size_t available = http->buf_len - http->buf_pos;
    if (available == 0) {
        return http->done ? sim_http_map_error(http->result) : OTA_ERR_TIMEOUT;
    }
    size_t n = available < cap ? available : cap;
    memcpy(buf, http->buf + http->buf_pos, n);
    http->buf_pos += n;
    *n_read = n;
    return OTA_OK;
}

void ota_port_http_close(ota_port_http_t *http) {
    sim_http_free(http);
}

void sim_http_reset(void) {
    sim_http_free(sim_http_open_request);
}

void sim_http_shutdown(void) {
    sim_http_reset();
    sim_port_set_ca_cert_pem(NULL);
    if (sim_http_easy != NULL) {
        curl_easy_cleanup(sim_http_easy);
        sim_http_easy = NULL;
    }
    if (sim_http_multi != NULL) {
        curl_multi_cleanup(sim_http_multi);
        sim_http_multi = NULL;
    }
    curl_global_cleanup();
}

uint64_t sim_http_request_count(void) {
    return sim_http_requests;
}
