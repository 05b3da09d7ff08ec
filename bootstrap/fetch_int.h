/*
 * What fetch.c (the main GET, its attempts and retries) and fetch_ahead.c
 * (the ranges and parts fetched beside it on more connections) share. Not
 * for other files: fetch.h is the interface. These two files are the only
 * ones that include curl/curl.h.
 */
#ifndef CB_FETCH_INT_H
#define CB_FETCH_INT_H

#include <curl/curl.h>

#include <stdbool.h>
#include <stdint.h>

#include "fetch.h"
#include "s3.h"

#define FETCH_ERROR_BODY_MAX 4096
#define FETCH_ETAG_MAX 256
#define FETCH_URL_TEXT_MAX 512

enum fetch_scheme {
	FETCH_FILE,
	FETCH_HTTP, /* http:// or https:// as given */
	FETCH_S3,   /* s3://, turned into a signed https:// (or endpoint) GET */
};

/* Why a write callback stopped the transfer (curl then says CURLE_WRITE_ERROR). */
enum fetch_abort {
	ABORT_NONE = 0,
	ABORT_SINK,       /* the sink failed: its error is in sink_err */
	ABORT_TOO_BIG,    /* over opts->max_bytes */
	ABORT_RESTART,    /* the resumed body is not the one we hold: start again from 0 */
	ABORT_UNEXPECTED, /* a reply we cannot use (206 to a request without Range) */
	ABORT_ERROR_BODY, /* an error body longer than we keep: enough read */
	ABORT_CONSUMER,   /* the unpacker reading along gave up (cb_avail_stop) */
	ABORT_HANDOFF,    /* the body reached the parts fetched on other connections */
};

/* One download: what the sink holds across attempts, and the current response. */
struct fetch_state {
	const struct cb_fetch_options *opts;
	struct cb_sink *sink;
	enum fetch_scheme scheme;

	/* Across attempts: what the sink holds. */
	uint64_t have_bytes;            /* body bytes the sink holds */
	char have_etag[FETCH_ETAG_MAX]; /* ETag of that body; "" when it cannot be resumed */
	int requested_range;            /* this attempt asked for bytes have_bytes- */

	/* The current response (reset at each status line, so redirects do not leak into it). */
	long status;
	int64_t content_length; /* -1: not given */
	int64_t range_first;    /* Content-Range: bytes FIRST-LAST/TOTAL; -1 when absent */
	int64_t range_total;
	char etag[FETCH_ETAG_MAX];
	long retry_after_s; /* -1: not given */
	char bucket_region[CB_S3_REGION_MAX];
	int redirected; /* this attempt followed a redirect */

	/* Unpacking while downloading (opts->avail): whether the tail is wanted, decided once. */
	int stream_decided;
	int tail_wanted;
	uint64_t total_bytes;
	/*
	 * The body waits (paused) while a range ahead is fetched: libcurl reads
	 * up to 100 buffers of one transfer per turn, so on a fast link the body
	 * would otherwise be whole before the range's first byte, and unpacking
	 * cannot begin without the tail and the central directory.
	 */
	int hold_body;
	int body_paused;
	int64_t hold_since_ms;
	unsigned room_waits; /* the body paused for the unpacker to make room */
	uint64_t handoff;    /* parts bring the body from here on; 0: no parts */

	/* The current attempt's body. */
	int body_started;
	int body_to_sink;
	uint64_t attempt_bytes; /* body bytes of this attempt given to the sink */
	char error_body[FETCH_ERROR_BODY_MAX];
	size_t error_body_size;
	enum fetch_abort abort;
	struct cb_error sink_err;
};

/* Everything one request needs that does not change between attempts. */
struct fetch_request {
	char url[CB_S3_URL_MAX];           /* what curl GETs */
	char url_text[FETCH_URL_TEXT_MAX]; /* what messages name: redacted */
	struct cb_s3_target s3;
	struct cb_s3_env env;
	int s3_signed; /* an s3:// URL, signed with env's credentials */
};

/* The connect timeout of an attempt: the configured one, never past the deadline. */
int64_t fetch_connect_timeout_ms(const struct cb_fetch_options *opts, int64_t remaining_ms);

/*
 * The options every handle of a download shares (TLS, redirects, speed
 * limits, buffer size, user agent) and its callbacks. CB_OK, or
 * CB_E_DOWNLOAD when libcurl refused one.
 */
enum cb_status fetch_set_common_options(CURL *curl, const struct cb_fetch_options *opts,
					char *errbuf, curl_write_callback header_fn,
					curl_write_callback body_fn, void *data);

/* The headers of one request: S3's and, when if_match is not NULL, If-Match. CB_E_NOMEM. */
enum cb_status fetch_request_headers(const struct fetch_request *req, const char *if_match,
				     struct curl_slist **list);

/* S3: the path as it is, and a SigV4 signature. Returns 0, or -1 when libcurl refused. */
int fetch_set_s3_options(CURL *curl, const struct fetch_request *req);

/* curl's error buffer, or its generic text when the buffer could quote a secret. */
const char *fetch_curl_reason(CURLcode rc, const char *errbuf);

/* Whether the sink takes more bytes now (see cb_sink.room). */
bool fetch_sink_has_room(struct fetch_state *st);

/* The body's next n bytes, in order, to the sink. Returns 0, or -1 with st->abort set. */
int fetch_deliver(struct fetch_state *st, const void *data, size_t n);

/* ---- fetch_ahead.c ---- */

/* The ranges fetched ahead of one download's body, and its parts on more connections. */
struct fetch_ahead;

/*
 * For a download that unpacks while it downloads (st->opts->avail, a sink
 * with write_at): a multi handle, and the avail's waker set to it. NULL when
 * out of memory (then the body comes in order only).
 */
struct fetch_ahead *fetch_ahead_new(struct fetch_state *st, const struct fetch_request *req);
void fetch_ahead_destroy(struct fetch_ahead *ahead);

/*
 * curl_easy_perform for the main GET (curl), with the ranges ahead running
 * beside it on the same multi handle, and the parts once the body reaches
 * them. Returns when the body is whole or the attempt failed; a range still
 * running then is given up, and so are the parts.
 */
CURLcode fetch_ahead_perform(struct fetch_ahead *ahead, CURL *curl, char *errbuf,
			     int64_t remaining_ms);

#endif
