/*
 * sim_clock.c — the virtual board's clock (sim_clock.h): time_scale x real time, held back
 * while a task that is due has not run.
 */
#define _GNU_SOURCE
#include "sim_clock.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>

#define SIM_CLOCK_MIN_RECHECK_NS 50000.0

static struct {
    pthread_mutex_t lock;
    double time_scale;
    double lead_us; /* virtual: how far past a due task the clock may run */
    double now_us;  /* virtual, as of settled_real */
    struct timespec settled_real;
    sim_clock_wait_t *waits; /* registered, unordered */
} s_clock = {.lock = PTHREAD_MUTEX_INITIALIZER, .time_scale = 1.0, .lead_us = 2000.0};

static double real_us_between(const struct timespec *from, const struct timespec *to) {
    return (double)(to->tv_sec - from->tv_sec) * 1e6 + (double)(to->tv_nsec - from->tv_nsec) / 1e3;
}

/* Advances now_us by the real time since the last settle, up to the earliest registered
 * instant plus the lead. */
static void clock_settle_locked(void) {
    struct timespec real;
    clock_gettime(CLOCK_MONOTONIC, &real);
    double elapsed_us = real_us_between(&s_clock.settled_real, &real);
    s_clock.settled_real = real;
    if (!(elapsed_us > 0.0)) {
        return;
    }
    double next_us = s_clock.now_us + elapsed_us * s_clock.time_scale;
    for (const sim_clock_wait_t *w = s_clock.waits; w != NULL; w = w->next) {
        double limit_us = (double)w->until_us + s_clock.lead_us;
        if (next_us > limit_us) {
            next_us = limit_us;
        }
    }
    if (next_us > s_clock.now_us) {
        s_clock.now_us = next_us;
    }
}

void sim_clock_start(double time_scale) {
    pthread_mutex_lock(&s_clock.lock);
    s_clock.time_scale = time_scale > 0.0 ? time_scale : 1.0;
    s_clock.lead_us = fmin(SIM_CLOCK_LEAD_REAL_US * s_clock.time_scale, SIM_CLOCK_LEAD_MAX_US);
    s_clock.now_us = 0.0;
    s_clock.waits = NULL;
    clock_gettime(CLOCK_MONOTONIC, &s_clock.settled_real);
    pthread_mutex_unlock(&s_clock.lock);
}

double sim_clock_time_scale(void) {
    return s_clock.time_scale;
}

int64_t sim_clock_now_us(void) {
    pthread_mutex_lock(&s_clock.lock);
    clock_settle_locked();
    int64_t now_us = (int64_t)s_clock.now_us;
    pthread_mutex_unlock(&s_clock.lock);
    return now_us;
}

void sim_clock_wait_begin(sim_clock_wait_t *wait, int64_t until_us) {
    pthread_mutex_lock(&s_clock.lock);
    clock_settle_locked(); /* the time before this wait is not held back by it */
    wait->until_us = until_us;
    wait->next = s_clock.waits;
    s_clock.waits = wait;
    pthread_mutex_unlock(&s_clock.lock);
}

void sim_clock_wait_begin_ms(sim_clock_wait_t *wait, uint64_t virtual_ms) {
    if (virtual_ms > 1000000000ull) {
        virtual_ms = 1000000000ull; /* 11.6 days: "forever" for a timed wait */
    }
    pthread_mutex_lock(&s_clock.lock);
    clock_settle_locked();
    wait->until_us = (int64_t)s_clock.now_us + (int64_t)virtual_ms * 1000;
    wait->next = s_clock.waits;
    s_clock.waits = wait;
    pthread_mutex_unlock(&s_clock.lock);
}

bool sim_clock_wait_reached(const sim_clock_wait_t *wait) {
    return sim_clock_now_us() >= wait->until_us;
}

struct timespec sim_clock_wait_recheck(const sim_clock_wait_t *wait) {
    pthread_mutex_lock(&s_clock.lock);
    clock_settle_locked();
    double remaining_us = (double)wait->until_us - s_clock.now_us;
    struct timespec at = s_clock.settled_real;
    double scale = s_clock.time_scale;
    pthread_mutex_unlock(&s_clock.lock);
    double real_ns = remaining_us > 0.0 ? remaining_us * 1e3 / scale : 0.0;
    if (real_ns < SIM_CLOCK_MIN_RECHECK_NS) {
        real_ns = SIM_CLOCK_MIN_RECHECK_NS;
    }
    if (real_ns > 1e15) {
        real_ns = 1e15;
    }
    uint64_t ns = (uint64_t)at.tv_nsec + (uint64_t)real_ns;
    at.tv_sec += (time_t)(ns / 1000000000ull);
    at.tv_nsec = (long)(ns % 1000000000ull);
    return at;
}

void sim_clock_wait_end(sim_clock_wait_t *wait) {
    pthread_mutex_lock(&s_clock.lock);
    clock_settle_locked(); /* the time until now was held back by this wait */
    for (sim_clock_wait_t **it = &s_clock.waits; *it != NULL; it = &(*it)->next) {
        if (*it == wait) {
            *it = wait->next;
            break;
        }
    }
    wait->next = NULL;
    pthread_mutex_unlock(&s_clock.lock);
}

void sim_clock_sleep_ms(uint64_t virtual_ms) {
    sim_clock_wait_t wait;
    sim_clock_wait_begin_ms(&wait, virtual_ms);
    while (!sim_clock_wait_reached(&wait)) {
        struct timespec at = sim_clock_wait_recheck(&wait);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR) {
        }
    }
    sim_clock_wait_end(&wait);
}
