/* The install lock: flock on .lock, which the kernel drops if the holder dies. */
#define _DEFAULT_SOURCE /* flock */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

enum cb_status cb_lock_acquire(struct cb_cache *cache, int64_t timeout_ms, int64_t *waited_ms,
			       struct cb_error *err)
{
	int64_t start_ms = cb_clock_now_ms();
	int64_t pause_ms = 2;
	enum cb_status status = CB_OK;

	*waited_ms = 0;
	if (cache->lock_fd < 0) {
		cache->lock_fd = openat(cache->root_fd, ".lock",
					O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (cache->lock_fd < 0)
			return cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
					    "cannot open %s/.lock: %s", cache->root,
					    strerror(errno));
	}
	/*
	 * Polling with a growing pause rather than a blocking flock keeps the
	 * deadline exact without signals, and costs nothing when uncontended.
	 */
	for (;;) {
		int64_t elapsed_ms;

		if (flock(cache->lock_fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			status = cb_error_set(err, CB_E_IO, errno, "cannot lock %s/.lock: %s",
					      cache->root, strerror(errno));
			goto out;
		}
		elapsed_ms = cb_clock_now_ms() - start_ms;
		if (timeout_ms >= 0 && elapsed_ms >= timeout_ms) {
			status = cb_error_set(err, CB_E_LOCK_TIMEOUT, 0,
					      "another start has held %s/.lock for over %lld ms; raise --lock-timeout "
					      "(COLDBOOT_LOCK_TIMEOUT) or find the stuck process",
					      cache->root, (long long)elapsed_ms);
			goto out;
		}
		if (timeout_ms >= 0 && pause_ms > timeout_ms - elapsed_ms)
			pause_ms = timeout_ms - elapsed_ms;
		sleep_ms(pause_ms);
		if (pause_ms < 50)
			pause_ms *= 2;
	}
out:
	*waited_ms = cb_clock_now_ms() - start_ms;
	if (status != CB_OK) {
		close(cache->lock_fd);
		cache->lock_fd = -1;
	}
	return status;
}

void cb_lock_release(struct cb_cache *cache)
{
	if (cache->lock_fd < 0)
		return;
	(void)flock(cache->lock_fd, LOCK_UN);
	close(cache->lock_fd);
	cache->lock_fd = -1;
}
