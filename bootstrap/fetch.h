/* Downloads a URL into a sink with libcurl (fetch.c, fetch_ahead.c: the only users of curl/curl.h). */
#ifndef CB_FETCH_H
#define CB_FETCH_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "../cache/cache.h"
#include "avail.h"

/*
 * Where the body goes. write() receives the bytes in order; restart() means
 * "forget everything written so far, the body starts again at byte 0" (a
 * retry that could not resume). Both return CB_OK or fill err.
 */
struct cb_sink {
	enum cb_status (*write)(void *ctx, const void *data, size_t size, struct cb_error *err);
	enum cb_status (*restart)(void *ctx, struct cb_error *err);
	void *ctx;
	/*
	 * Optional (NULL: the body only arrives in order): bytes of a ranged GET
	 * fetched ahead of the body (the zip's tail, its central directory), to
	 * be stored at offset. Called on the same thread as write() and restart().
	 */
	enum cb_status (*write_at)(void *ctx, uint64_t offset, const void *data, size_t size,
				   struct cb_error *err);
	/*
	 * Optional, while unpacking as it downloads (NULL: always): false when
	 * the next bytes must wait for the unpacker to make room (see
	 * cb_avail_room); the body is then paused until it does, or for a poll
	 * interval at most, and asked again.
	 */
	bool (*room)(void *ctx);
};

struct cb_fetch_options {
	const char *url;            /* file://, http://, https://, s3:// */
	int64_t deadline_ms;        /* cb_clock_now_ms() by which to give up */
	uint64_t max_bytes;         /* refuse a body larger than this; 0: no cap */
	int64_t connect_timeout_ms; /* 0: default (10 s) */
	long low_speed_bytes_per_s; /* abort below this rate ... 0: default (1024) */
	long low_speed_time_s;      /* ... sustained this long; 0: default (15) */
	/*
	 * Optional, with sink->write_at: unpack while downloading. For http(s)
	 * and s3 URLs, once the main GET's 200 gives the size and a strong ETag,
	 * the tail of the object is fetched at once on a second connection (and
	 * later what avail asks for, the central directory), its 206 checked
	 * against what was asked, and recorded in avail as it completes; the
	 * main GET's progress is the sink's to record. Anything unexpected turns
	 * streaming off (cb_avail_disable); the download itself goes on as
	 * without it. When the unpacker stops (cb_avail_stop), the download stops
	 * too, with CB_E_DOWNLOAD.
	 */
	struct cb_avail *avail;
};

struct cb_fetch_result {
	uint64_t bytes;    /* body bytes delivered to the sink, in the final attempt's body */
	uint32_t attempts; /* HTTP attempts made */
	long http_status;  /* last HTTP status, 0 for file:// */
};

/*
 * Fetches opts->url into sink. Redirects only to http/https, at most 5; TLS
 * verified. Errors: CB_E_DOWNLOAD (with a one-line reason that never holds a
 * secret), CB_E_CONFIG (bad URL, missing credentials), or what the sink returned.
 */
enum cb_status cb_fetch_to_sink(const struct cb_fetch_options *opts, struct cb_sink *sink,
				struct cb_fetch_result *res, struct cb_error *err);

#endif
