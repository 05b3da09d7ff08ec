/* bootstrap/avail.c: which bytes of a download are present, waits, requests, breaks. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../bootstrap/avail.h"

/*
 * Streaming as the fetch starts it: total bytes, of which the last tenth
 * (the tail, fetched ahead) is in; waits end deadline_ms after now.
 */
static struct cb_avail *streaming(int64_t deadline_ms, uint64_t total)
{
	struct cb_avail *a = cb_avail_new(cb_clock_now_ms() + deadline_ms);
	uint64_t seen = 0;

	assert_non_null(a);
	cb_avail_set_total(a, total);
	cb_avail_add_range(a, total - total / 10, total);
	assert_int_equal(cb_avail_wait_start(a, &seen), CB_AVAIL_STREAM);
	assert_int_equal(seen, total);
	return a;
}

/* A wait that must succeed at once, and one that must fail (bounded by the deadline). */
static void ranges_and_prefix(void **state)
{
	struct cb_avail *a = streaming(200, 1000);
	struct cb_error err;
	uint64_t start = 0, end = 0;

	(void)state;
	assert_int_equal(cb_avail_wait(a, 900, 1000, false, &err), CB_OK);
	/* Adjacent ranges merge: 700-900 and 900-1000 are one. */
	cb_avail_add_range(a, 700, 900);
	assert_int_equal(cb_avail_wait(a, 750, 1000, false, &err), CB_OK);
	/* Not present: asked for, once, and the wait gives up at the deadline. */
	cb_avail_set_prefix(a, 100);
	assert_int_equal(cb_avail_wait(a, 50, 120, true, &err), CB_E_DOWNLOAD);
	assert_true(cb_avail_take_request(a, &start, &end));
	assert_int_equal(start, 100);
	assert_int_equal(end, 120);
	assert_false(cb_avail_take_request(a, &start, &end));
	/* The prefix and a range together cover a span. */
	cb_avail_set_prefix(a, 700);
	assert_int_equal(cb_avail_wait(a, 0, 1000, false, &err), CB_OK);
	assert_true(cb_avail_overlap(a, 650, 800, &start, &end));
	assert_int_equal(start, 700);
	assert_int_equal(end, 800);
	assert_false(cb_avail_overlap(a, 0, 650, &start, &end));
	cb_avail_destroy(a);
}

struct waiter {
	struct cb_avail *a;
	uint64_t start, end;
	enum cb_status status;
	struct cb_error err;
};

static void *wait_run(void *arg)
{
	struct waiter *w = arg;

	w->status = cb_avail_wait(w->a, w->start, w->end, false, &w->err);
	return NULL;
}

static void wait_in_thread(struct cb_avail *a, uint64_t start, uint64_t end, struct waiter *w,
			   pthread_t *thread)
{
	struct timespec pause = {0, 20 * 1000 * 1000};

	memset(w, 0, sizeof(*w));
	w->a = a;
	w->start = start;
	w->end = end;
	w->status = CB_E_IO; /* not yet */
	assert_int_equal(pthread_create(thread, NULL, wait_run, w), 0);
	/* Give it time to block; the test holds either way (the wait then returns at once). */
	nanosleep(&pause, NULL);
}

/* A waiter wakes when its bytes come, and fails at once when the stream breaks or stops. */
static void waiters_wake(void **state)
{
	struct cb_avail *a = streaming(10000, 100);
	struct waiter w;
	pthread_t thread;

	(void)state;
	wait_in_thread(a, 10, 20, &w, &thread);
	cb_avail_set_prefix(a, 20);
	pthread_join(thread, NULL);
	assert_int_equal(w.status, CB_OK);

	wait_in_thread(a, 30, 40, &w, &thread);
	cb_avail_disable(a); /* a restart from byte 0 */
	pthread_join(thread, NULL);
	assert_int_equal(w.status, CB_E_DOWNLOAD);
	assert_true(cb_avail_broken(a));
	assert_false(cb_avail_usable(a));
	/* A failure explained by the break does not stop the download. */
	cb_avail_stop(a);
	assert_false(cb_avail_stopped(a));
	cb_avail_destroy(a);

	a = cb_avail_new(0);
	assert_non_null(a);
	cb_avail_add_range(a, 90, 100);
	wait_in_thread(a, 30, 40, &w, &thread);
	cb_avail_stop(a); /* the unpacker failed on its own */
	pthread_join(thread, NULL);
	assert_int_equal(w.status, CB_E_ZIP);
	assert_true(cb_avail_stopped(a));
	cb_avail_destroy(a);

	a = cb_avail_new(0);
	assert_non_null(a);
	cb_avail_add_range(a, 90, 100);
	wait_in_thread(a, 30, 40, &w, &thread);
	cb_avail_download_done(a, false);
	pthread_join(thread, NULL);
	assert_int_equal(w.status, CB_E_DOWNLOAD);
	cb_avail_destroy(a);
}

/*
 * The body grows in small steps and only a step reaching a waiter's bytes
 * wakes it; with ranges ahead, the prefix it needs ends where they begin. A
 * lost wake-up would show as the deadline passing.
 */
static void waiters_wake_at_their_bytes(void **state)
{
	struct cb_avail *a = streaming(3000, 1000);
	struct timespec pause = {0, 20 * 1000 * 1000};
	struct waiter near, far;
	pthread_t t_near, t_far;

	(void)state;
	wait_in_thread(a, 500, 950, &far, &t_far); /* needs the prefix at 900 */
	wait_in_thread(a, 10, 200, &near, &t_near);
	for (uint64_t p = 16; p < 200; p += 16)
		cb_avail_set_prefix(a, p);
	nanosleep(&pause, NULL);
	assert_int_equal(near.status, CB_E_IO); /* still waiting */
	cb_avail_set_prefix(a, 200);
	pthread_join(t_near, NULL);
	assert_int_equal(near.status, CB_OK);
	for (uint64_t p = 216; p < 900; p += 16)
		cb_avail_set_prefix(a, p);
	nanosleep(&pause, NULL);
	assert_int_equal(far.status, CB_E_IO);
	cb_avail_set_prefix(a, 900);
	pthread_join(t_far, NULL);
	assert_int_equal(far.status, CB_OK);
	cb_avail_destroy(a);
}

/* No range ever came: the unpacker is told not to stream. */
static void never_streaming(void **state)
{
	struct cb_avail *a = cb_avail_new(0);
	uint64_t total = 1;

	(void)state;
	assert_non_null(a);
	cb_avail_disable(a);
	assert_int_equal(cb_avail_wait_start(a, &total), CB_AVAIL_NO);
	assert_false(cb_avail_broken(a));
	cb_avail_add_range(a, 0, 10); /* too late: ignored */
	assert_int_equal(cb_avail_wait_start(a, &total), CB_AVAIL_NO);
	cb_avail_destroy(a);

	a = cb_avail_new(0);
	assert_non_null(a);
	cb_avail_download_done(a, true);
	assert_int_equal(cb_avail_wait_start(a, &total), CB_AVAIL_NO);
	cb_avail_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ranges_and_prefix),
		cmocka_unit_test(waiters_wake),
		cmocka_unit_test(waiters_wake_at_their_bytes),
		cmocka_unit_test(never_streaming),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
