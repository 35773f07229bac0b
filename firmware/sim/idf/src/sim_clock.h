/*
 * sim_clock.h — the virtual board's clock: real time times --time-scale, except that it
 * never runs ahead of a task that is due.
 *
 * Every timed wait of the firmware (vTaskDelay, a queue, semaphore or event-group timeout,
 * an esp_timer alarm) registers the virtual instant it waits for. The clock then advances
 * at time_scale x real time, but never more than SIM_CLOCK_LEAD_REAL_US of real time (at
 * most SIM_CLOCK_LEAD_MAX_US of virtual time) past the earliest registered instant whose
 * task has not run yet. A board process that the host deschedules therefore does not leap
 * over a task's timeout when it resumes: the tasks that were due run first, in order, as on
 * the chip, where the RTOS tick and the tasks stop together. A task that is late only
 * slows the virtual clock down; it never changes what the firmware observes in between.
 *
 * Network time does not scale: timeouts of network I/O are real time (esp_http_client.c)
 * and are not registered, and the clock runs on at time_scale during a request. At 3600x a
 * 10 ms answer therefore costs the firmware 36 s of virtual time: `csi-ota fleet` widens
 * the self-test window of its virtual ESP32-S3s by the real time it needs (fleet/virtual.py).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How far the clock may run past a due task: 2 ms of real time, at most 5 s of virtual
 * time (the firmware's shortest scaled timeouts are 30 s self-test windows). */
#define SIM_CLOCK_LEAD_REAL_US 2000.0
#define SIM_CLOCK_LEAD_MAX_US 5000000.0

/* A registered wait: the caller owns the storage for the length of the wait. */
typedef struct sim_clock_wait {
    int64_t until_us; /* virtual */
    struct sim_clock_wait *next;
} sim_clock_wait_t;

/* Starts the clock at virtual 0 (once per boot, before any task runs). */
void sim_clock_start(double time_scale);
double sim_clock_time_scale(void);

/* Microseconds of virtual time since sim_clock_start (monotonic). */
int64_t sim_clock_now_us(void);

/* Registers a wait for the virtual instant until_us (absolute). */
void sim_clock_wait_begin(sim_clock_wait_t *wait, int64_t until_us);
/* Registers a wait for virtual_ms from now. */
void sim_clock_wait_begin_ms(sim_clock_wait_t *wait, uint64_t virtual_ms);
/* The instant has come on the virtual clock. */
bool sim_clock_wait_reached(const sim_clock_wait_t *wait);
/* The CLOCK_MONOTONIC instant to look again: when the instant will come if the clock runs
 * at full speed (at least 50 us from now, so a task blocked behind a late one does not
 * spin). */
struct timespec sim_clock_wait_recheck(const sim_clock_wait_t *wait);
/* Ends the wait (reached or not): the clock no longer waits for this task. */
void sim_clock_wait_end(sim_clock_wait_t *wait);

/* Sleeps until virtual_ms of virtual time have passed (a registered wait). */
void sim_clock_sleep_ms(uint64_t virtual_ms);

#ifdef __cplusplus
}
#endif
