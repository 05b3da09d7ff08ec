/* bootstrap/avail.c: which bytes of a download are present, waits, requests, breaks. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The spare memory is "not planned" until the unpacker says, then what it said, 0 included. */
static void spare_is_unknown_until_planned(void **state)
{
	struct cb_avail *a = cb_avail_new(0);
	uint64_t spare = 42;

	(void)state;
	assert_non_null(a);
	assert_false(cb_avail_spare(a, &spare));
	cb_avail_set_spare(a, 0);
	assert_true(cb_avail_spare(a, &spare));
	assert_int_equal(spare, 0);
	cb_avail_set_spare(a, UINT64_MAX);
	assert_true(cb_avail_spare(a, &spare));
	assert_true(spare == UINT64_MAX);
	cb_avail_destroy(a);
}

/* ---- the ring ---- */

#define BLOCK CB_AVAIL_BLOCK_BYTES

static unsigned char body_byte(uint64_t at)
{
	return (unsigned char)(at * 131u + at / 4093u);
}

/* The download's side, as install.c's sink does it: ring first, else the file; then the prefix. */
static void put_body(struct cb_avail *a, int fd, uint64_t *at, size_t n)
{
	unsigned char *p = malloc(n);

	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = body_byte(*at + i);
	for (size_t done = 0; done < n;) {
		size_t file_bytes = n - done;
		size_t taken = cb_avail_put(a, *at, p + done, n - done, &file_bytes);

		if (taken == 0) {
			assert_true(file_bytes > 0 && file_bytes <= n - done);
			assert_int_equal(pwrite(fd, p + done, file_bytes, (off_t)*at),
					 (ssize_t)file_bytes);
			taken = file_bytes;
		}
		*at += taken;
		done += taken;
	}
	cb_avail_set_prefix(a, *at);
	free(p);
}

static void read_ring_and_check(struct cb_avail *a, int ring, int fd, uint64_t at, size_t n)
{
	unsigned char *p = malloc(n);
	struct cb_error err;

	assert_non_null(p);
	assert_int_equal(cb_avail_ring_read(a, ring, fd, at, p, n, &err), CB_OK);
	for (size_t i = 0; i < n; i++)
		if (p[i] != body_byte(at + i))
			fail_msg("byte %llu read wrong", (unsigned long long)(at + i));
	free(p);
}

static void read_and_check(struct cb_avail *a, int fd, uint64_t at, size_t n)
{
	read_ring_and_check(a, 0, fd, at, n);
}

/* Whether the file holds nothing (a hole) at [at, at + n): those bytes never went through it. */
static bool file_empty_at(int fd, uint64_t at, size_t n)
{
	unsigned char *p = calloc(1, n);
	bool empty = true;
	ssize_t got;

	assert_non_null(p);
	got = pread(fd, p, n, (off_t)at);
	for (ssize_t i = 0; i < got; i++)
		empty = empty && p[i] == 0;
	free(p);
	return empty;
}

/*
 * Two slots for a range of ten blocks and a bit, starting mid-file: blocks
 * that find a slot free skip the file, the others go to it, a slot read to
 * its end takes the next block; the reader gets every byte right either way.
 */
static void ring_takes_blocks_while_slots_are_free(void **state)
{
	uint64_t total = 14 * (uint64_t)BLOCK, start = BLOCK + 1000, end = start + 10 * BLOCK + 77;
	struct cb_avail *a = streaming(5000, total);
	unsigned char *mem = malloc(2 * BLOCK);
	FILE *tmp = tmpfile();
	int fd = tmp != NULL ? fileno(tmp) : -1;
	uint64_t at = 0, read_at = start;

	(void)state;
	assert_non_null(mem);
	assert_true(fd >= 0);
	assert_int_equal(cb_avail_ring_open(a, start, end, mem, 2), 0);
	/* Up to the range and four blocks into it: two in the slots, two in the file. */
	put_body(a, fd, &at, (size_t)(start - 10));
	put_body(a, fd, &at, 10 + 4 * BLOCK - 5);
	assert_true(file_empty_at(fd, start, 2 * BLOCK));
	assert_false(file_empty_at(fd, start + 2 * BLOCK, BLOCK));
	/* Before the range, from the file; then the first slot, read to its end, is free. */
	read_and_check(a, fd, start - 500, 500);
	read_and_check(a, fd, read_at, BLOCK / 3);
	read_and_check(a, fd, read_at + BLOCK / 3, BLOCK - BLOCK / 3);
	read_at += BLOCK;
	/* The rest of block 3 to the file, where it began; block 4 into the slot read to its end. */
	put_body(a, fd, &at, 5 + BLOCK);
	assert_true(file_empty_at(fd, start + 4 * BLOCK, BLOCK));
	/* The reader keeps up from here: every later block finds a slot. */
	while (read_at < end) {
		size_t n = end - read_at < BLOCK / 2 + 3 ? (size_t)(end - read_at) : BLOCK / 2 + 3;

		if (at < read_at + n)
			put_body(a, fd, &at, (size_t)(end - at < BLOCK ? end - at : BLOCK));
		read_and_check(a, fd, read_at, n);
		read_at += n;
	}
	assert_true(file_empty_at(fd, start + 5 * BLOCK, (size_t)(end - start - 5 * BLOCK)));
	assert_int_equal(cb_avail_ring_close(a, 0), end - start - 2 * BLOCK);
	/* Closed: what comes next goes to the file. */
	put_body(a, fd, &at, 1000);
	assert_false(file_empty_at(fd, end, 1000));
	fclose(tmp);
	free(mem);
	cb_avail_destroy(a);
}

/*
 * The ring's bytes come with the body: bytes fetched ahead (the tail) do not
 * make its reader go on. A broken stream closes it: the body written again
 * goes to the file, whole.
 */
static void ring_follows_the_body(void **state)
{
	uint64_t total = 8 * (uint64_t)BLOCK;
	struct cb_avail *a = streaming(300, total); /* the last tenth is in, fetched ahead */
	unsigned char *mem = malloc(4 * BLOCK);
	unsigned char buf[100];
	FILE *tmp = tmpfile();
	int fd = tmp != NULL ? fileno(tmp) : -1;
	struct cb_error err;
	size_t file_bytes = 0;
	uint64_t at = 0;

	(void)state;
	assert_non_null(mem);
	assert_true(fd >= 0);
	assert_int_equal(cb_avail_wait(a, total - 100, total, false, &err), CB_OK);
	assert_int_equal(cb_avail_ring_open(a, 6 * (uint64_t)BLOCK, total, mem, 4), 0);
	assert_int_equal(cb_avail_ring_read(a, 0, fd, total - 100, buf, 100, &err), CB_E_DOWNLOAD);
	put_body(a, fd, &at, 7 * BLOCK);
	read_and_check(a, fd, 6 * (uint64_t)BLOCK, BLOCK);
	/* The object changed: everything again from byte 0, to the file. */
	cb_avail_disable(a);
	assert_int_equal(cb_avail_ring_read(a, 0, fd, 7 * (uint64_t)BLOCK, buf, 100, &err),
			 CB_E_DOWNLOAD);
	assert_int_equal(cb_avail_put(a, 7 * (uint64_t)BLOCK, buf, 100, &file_bytes), 0);
	assert_int_equal(file_bytes, 100);
	assert_int_equal(cb_avail_ring_close(a, 0), BLOCK);
	fclose(tmp);
	free(mem);
	cb_avail_destroy(a);
}

/* Two readers at once: each range's blocks go to its own ring, the bytes between to the file. */
static void rings_side_by_side(void **state)
{
	uint64_t total = 12 * (uint64_t)BLOCK, at = 0;
	uint64_t s1 = 1000, e1 = s1 + 3 * BLOCK, s2 = e1 + 5000, e2 = s2 + 2 * BLOCK + 9;
	struct cb_avail *a = streaming(5000, total);
	unsigned char *mem = malloc(6 * BLOCK);
	FILE *tmp = tmpfile();
	int fd = tmp != NULL ? fileno(tmp) : -1;
	int r1, r2;

	(void)state;
	assert_non_null(mem);
	assert_true(fd >= 0);
	r1 = cb_avail_ring_open(a, s1, e1, mem, 3);
	r2 = cb_avail_ring_open(a, s2, e2, mem + 3 * BLOCK, 3);
	assert_true(r1 >= 0 && r2 >= 0 && r1 != r2);
	put_body(a, fd, &at, (size_t)(e2 + 100));
	assert_true(file_empty_at(fd, s1, (size_t)(e1 - s1)));
	assert_false(file_empty_at(fd, e1, (size_t)(s2 - e1)));
	assert_true(file_empty_at(fd, s2, (size_t)(e2 - s2)));
	read_ring_and_check(a, r2, fd, s2, (size_t)(e2 - s2));
	read_ring_and_check(a, r1, fd, s1, (size_t)(e1 - s1));
	assert_int_equal(cb_avail_ring_close(a, r1), e1 - s1);
	assert_int_equal(cb_avail_ring_close(a, r2), e2 - s2);
	fclose(tmp);
	free(mem);
	cb_avail_destroy(a);
}

static void count_wake(void *ctx)
{
	atomic_fetch_add((atomic_int *)ctx, 1);
}

/*
 * With every slot taken, the body waits for the reader (cb_avail_room), and
 * is woken when a slot comes free; but never while another thread waits for
 * the body: the block then goes to the file.
 */
static void ring_full_holds_the_body_unless_someone_waits(void **state)
{
	uint64_t total = 10 * (uint64_t)BLOCK, at = 0;
	struct cb_avail *a = streaming(5000, total);
	unsigned char *mem = malloc(3 * BLOCK);
	FILE *tmp = tmpfile();
	int fd = tmp != NULL ? fileno(tmp) : -1;
	atomic_int wakes;
	struct waiter far;
	pthread_t thread;

	(void)state;
	atomic_init(&wakes, 0);
	assert_non_null(mem);
	assert_true(fd >= 0);
	cb_avail_set_waker(a, count_wake, &wakes);
	assert_int_equal(cb_avail_ring_open(a, BLOCK, 6 * (uint64_t)BLOCK, mem, 3), 0);
	put_body(a, fd, &at, 4 * BLOCK); /* the file, then three blocks in the three slots */
	assert_true(cb_avail_room(a, 2 * (uint64_t)BLOCK + 5)); /* not a block's start */
	assert_false(cb_avail_room(a, 4 * (uint64_t)BLOCK));
	assert_int_equal(atomic_load(&wakes), 0);
	/* A slot read to its end wakes the download, which goes on into it. */
	read_and_check(a, fd, BLOCK, BLOCK);
	assert_int_equal(atomic_load(&wakes), 1);
	assert_true(cb_avail_room(a, 4 * (uint64_t)BLOCK));
	put_body(a, fd, &at, BLOCK);
	assert_false(cb_avail_room(a, 5 * (uint64_t)BLOCK));
	/* Someone waits for later bytes: the download is woken, and not held again. */
	wait_in_thread(a, 7 * (uint64_t)BLOCK, 7 * (uint64_t)BLOCK + 10, &far, &thread);
	for (int i = 0; i < 200 && atomic_load(&wakes) < 2; i++)
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); /* 2 s at most */
	assert_int_equal(atomic_load(&wakes), 2);
	assert_true(cb_avail_room(a, 5 * (uint64_t)BLOCK));
	put_body(a, fd, &at, 3 * BLOCK);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_int_equal(far.status, CB_OK);
	assert_false(file_empty_at(fd, 5 * (uint64_t)BLOCK, BLOCK)); /* that block went to the file */
	read_and_check(a, fd, 2 * (uint64_t)BLOCK, 4 * BLOCK);
	assert_int_equal(cb_avail_ring_close(a, 0), 4 * (uint64_t)BLOCK);
	fclose(tmp);
	free(mem);
	cb_avail_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ranges_and_prefix),
		cmocka_unit_test(waiters_wake),
		cmocka_unit_test(waiters_wake_at_their_bytes),
		cmocka_unit_test(never_streaming),
		cmocka_unit_test(spare_is_unknown_until_planned),
		cmocka_unit_test(ring_takes_blocks_while_slots_are_free),
		cmocka_unit_test(ring_follows_the_body),
		cmocka_unit_test(rings_side_by_side),
		cmocka_unit_test(ring_full_holds_the_body_unless_someone_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
