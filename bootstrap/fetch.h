/* Downloads a URL into a sink with libcurl. The only user of curl/curl.h. */
#ifndef CB_FETCH_H
#define CB_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "../cache/cache.h"

/*
 * Where the body goes. write() receives the bytes in order; restart() means
 * "forget everything written so far, the body starts again at byte 0" (a
 * retry that could not resume). Both return CB_OK or fill err.
 */
struct cb_sink {
	enum cb_status (*write)(void *ctx, const void *data, size_t size, struct cb_error *err);
	enum cb_status (*restart)(void *ctx, struct cb_error *err);
	void *ctx;
};

struct cb_fetch_options {
	const char *url;            /* file://, http://, https://, s3:// */
	int64_t deadline_ms;        /* cb_clock_now_ms() by which to give up */
	uint64_t max_bytes;         /* refuse a body larger than this; 0: no cap */
	int64_t connect_timeout_ms; /* 0: default (10 s) */
	long low_speed_bytes_per_s; /* abort below this rate ... 0: default (1024) */
	long low_speed_time_s;      /* ... sustained this long; 0: default (15) */
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
