/* ota_log.c — ota_log_write(): varargs front end of ota_port_log(). */
#include "ota_log.h"

#include <stdarg.h>

void ota_log_write(ota_log_level_t level, const char *tag, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    ota_port_log(level, tag, fmt, args);
    va_end(args);
}
