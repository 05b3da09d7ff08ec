/*
 * Downloads a URL into a sink with the libcurl easy API: file://, http://,
 * https:// and s3:// (signed with CURLOPT_AWS_SIGV4). Retries what is worth
 * retrying with exponential backoff and full jitter inside one overall
 * deadline, and resumes an interrupted body with Range + If-Match. This is
 * the only file that includes curl/curl.h.
 */
#include <curl/curl.h>

#include "fetch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bigbuf.h"
#include "s3.h"

#define FETCH_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define FETCH_DEFAULT_LOW_SPEED_BYTES_PER_S 1024L
#define FETCH_DEFAULT_LOW_SPEED_TIME_S 15L
#define FETCH_MAX_REDIRECTS 5L
#define FETCH_BACKOFF_BASE_MS 100
#define FETCH_BACKOFF_CAP_MS 5000
/* Attempts in a row that deliver no new byte; one that does resets the count. */
#define FETCH_MAX_FAILURES_IN_A_ROW 8
/* Name and connection failures mostly mean a wrong URL: give them fewer chances. */
#define FETCH_MAX_CONNECT_FAILURES 3
/* A bound on everything, so a server that cuts every response still ends. */
#define FETCH_MAX_ATTEMPTS 64
#define FETCH_ERROR_BODY_MAX 4096
#define FETCH_ETAG_MAX 256
#define FETCH_URL_TEXT_MAX 512
/* SHA-256 of an empty body: the payload hash of a GET. */
#define FETCH_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/*
 * The tail fetched ahead: libzip 1.7.3 looks for the end record in the last
 * 65,577 bytes (the largest comment plus the end record and zip64 locator),
 * and every read of the unpacker must find its bytes present.
 */
#define FETCH_TAIL_BYTES (128u * 1024u)
/* Smaller objects are not worth a second connection: they arrive at once. */
#define FETCH_STREAM_MIN_BYTES (1024u * 1024u)
/* How long the transfer loop sleeps at most, so a request of the unpacker is seen soon. */
#define FETCH_POLL_MS 20
/* The body waits for the tail at most this long, then goes on without it. */
#define FETCH_HOLD_BODY_MAX_MS 2000
/*
 * Parts: when one connection brings the body slower than this (S3 gives
 * about 90 MB/s per connection) and the unpacker never had to hold it back,
 * the rest comes in parts of FETCH_PART_BYTES on up to FETCH_LANES_MAX
 * connections, each part in memory until the body reaches it. The rate is
 * judged over the body's first FETCH_WATCH_MS after the tail is in.
 */
#define FETCH_SLOW_BYTES_PER_S (160u * 1024u * 1024u)
#define FETCH_WATCH_MS 100
#define FETCH_PART_BYTES (4u * 1024u * 1024u)
#define FETCH_LANES_MAX 4
/* A part's bytes go to the sink in pieces this big, so a full ring is seen at once. */
#define FETCH_DELIVER_BYTES (256u * 1024u)

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

/* How one attempt ended. */
enum fetch_verdict {
	VERDICT_DONE,      /* the whole body is in the sink */
	VERDICT_RETRY,     /* transient: back off and try again (resuming when possible) */
	VERDICT_RETRY_NOW, /* start again from byte 0 at once */
	VERDICT_FAIL,      /* err is filled */
};

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

static int fetch_curl_ready;

/* curl_global_init is not thread-safe; coldboot calls this from one thread only. */
static enum cb_status fetch_global_init(struct cb_error *err)
{
	CURLcode rc;

	if (fetch_curl_ready)
		return CB_OK;
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		return cb_error_set(err, CB_E_DOWNLOAD, 0, "cannot initialise libcurl: %s",
				    curl_easy_strerror(rc));
	fetch_curl_ready = 1;
	return CB_OK;
}

static int starts_with_nocase(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++) {
		char a = *s;
		char b = *prefix;
		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (a != b)
			return 0;
	}
	return 1;
}

/* The value of "Name: value\r\n" when the line's name is name (lower case), else NULL. */
static const char *header_value(const char *line, size_t size, const char *name, size_t *value_size)
{
	size_t name_size = strlen(name);
	size_t i;

	if (size <= name_size || !starts_with_nocase(line, name) || line[name_size] != ':')
		return NULL;
	i = name_size + 1;
	while (i < size && (line[i] == ' ' || line[i] == '\t'))
		i++;
	*value_size = size - i;
	while (*value_size > 0 &&
	       (line[i + *value_size - 1] == '\r' || line[i + *value_size - 1] == '\n' ||
		line[i + *value_size - 1] == ' '))
		(*value_size)--;
	return line + i;
}

/* Parses a decimal count, refusing anything else (signs, spaces, overflow). */
static int parse_count(const char *text, size_t size, int64_t *out)
{
	int64_t value = 0;

	if (size == 0 || size > 18)
		return -1;
	for (size_t i = 0; i < size; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	*out = value;
	return 0;
}

/*
 * "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"): fills what it can read, -1
 * for the rest.
 */
static void parse_range_fields(const char *v, size_t size, int64_t *first, int64_t *last,
			       int64_t *total)
{
	const char *dash;
	const char *slash;
	const char *end = v + size;

	*first = *last = *total = -1;
	if (size < 6 || memcmp(v, "bytes ", 6) != 0)
		return;
	v += 6;
	dash = memchr(v, '-', (size_t)(end - v));
	slash = memchr(v, '/', (size_t)(end - v));
	if (dash == NULL || slash == NULL || slash < dash)
		return;
	if (parse_count(v, (size_t)(dash - v), first) != 0) {
		*first = -1;
		return;
	}
	if (parse_count(dash + 1, (size_t)(slash - dash - 1), last) != 0)
		*last = -1;
	if (parse_count(slash + 1, (size_t)(end - slash - 1), total) != 0)
		*total = -1;
}

static void parse_content_range(struct fetch_state *st, const char *v, size_t size)
{
	int64_t first;
	int64_t last;
	int64_t total;

	parse_range_fields(v, size, &first, &last, &total);
	if (first < 0)
		return;
	st->range_first = first;
	if (total >= 0)
		st->range_total = total;
}

/*
 * Whether the header line starts a response ("HTTP/1.1 206 ..."); its status
 * goes to *status, 0 when unreadable.
 */
static int is_status_line(const char *buffer, size_t n, long *status)
{
	const char *sp;
	int64_t number;

	if (n < 5 || memcmp(buffer, "HTTP/", 5) != 0)
		return 0;
	*status = 0;
	sp = memchr(buffer, ' ', n);
	if (sp != NULL && (size_t)(sp - buffer) + 4 <= n && parse_count(sp + 1, 3, &number) == 0)
		*status = (long)number;
	return 1;
}

/* The connect timeout of an attempt: the configured one, never past the deadline. */
static int64_t connect_timeout_ms(const struct cb_fetch_options *opts, int64_t remaining_ms)
{
	int64_t ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms :
						    FETCH_DEFAULT_CONNECT_TIMEOUT_MS;

	return ms > remaining_ms ? remaining_ms : ms;
}

static void reset_response(struct fetch_state *st)
{
	st->status = 0;
	st->content_length = -1;
	st->range_first = -1;
	st->range_total = -1;
	st->etag[0] = '\0';
	st->retry_after_s = -1;
	st->bucket_region[0] = '\0';
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata)
{
	struct fetch_state *st = userdata;
	size_t n = size * nitems;
	const char *v;
	size_t vs;
	int64_t number;
	long status;

	if (is_status_line(buffer, n, &status)) {
		reset_response(st);
		st->status = status;
		if (st->status >= 300 && st->status < 400)
			st->redirected = 1;
		return n;
	}
	if ((v = header_value(buffer, n, "content-length", &vs)) != NULL) {
		if (parse_count(v, vs, &number) == 0)
			st->content_length = number;
	} else if ((v = header_value(buffer, n, "content-range", &vs)) != NULL) {
		parse_content_range(st, v, vs);
	} else if ((v = header_value(buffer, n, "etag", &vs)) != NULL) {
		if (vs < sizeof(st->etag)) {
			memcpy(st->etag, v, vs);
			st->etag[vs] = '\0';
		}
	} else if ((v = header_value(buffer, n, "retry-after", &vs)) != NULL) {
		/* Only the delay-seconds form; an HTTP-date falls back to our own backoff. */
		if (parse_count(v, vs, &number) == 0)
			st->retry_after_s = number > 3600 ? 3600 : (long)number;
	} else if ((v = header_value(buffer, n, "x-amz-bucket-region", &vs)) != NULL) {
		if (vs < sizeof(st->bucket_region)) {
			memcpy(st->bucket_region, v, vs);
			st->bucket_region[vs] = '\0';
		}
	}
	return n;
}

/*
 * At the first 200 of a download that may stream: the tail is fetched ahead
 * when the object is big enough, its size is known, its ETag is strong (so
 * the tail is provably the same object) and no redirect was followed (the
 * ranged GET goes to the URL as given). Otherwise streaming is off.
 */
static void decide_streaming(struct fetch_state *st)
{
	struct cb_avail *avail = st->opts->avail;

	if (avail == NULL || st->stream_decided)
		return;
	st->stream_decided = 1;
	if (st->scheme == FETCH_FILE || st->redirected || st->content_length < 0 ||
	    (uint64_t)st->content_length < FETCH_STREAM_MIN_BYTES || st->have_etag[0] == '\0') {
		cb_log(CB_LOG_DEBUG, "not unpacking while downloading (%s)",
		       st->scheme == FETCH_FILE ? "a local file" :
		       st->redirected           ? "redirected" :
		       st->content_length < 0   ? "no Content-Length" :
		       st->have_etag[0] == '\0' ? "no strong ETag" :
						  "small object");
		cb_avail_disable(avail);
		return;
	}
	st->total_bytes = (uint64_t)st->content_length;
	st->tail_wanted = 1;
	st->hold_body = 1;
	st->hold_since_ms = cb_clock_now_ms();
	cb_avail_set_total(avail, st->total_bytes);
}

/*
 * Decides, once per attempt, where the body goes: to the sink (2xx), or to
 * error_body (everything else). Checks the size cap against the announced
 * length and, for a resumed request, that the 206 continues the very body the
 * sink holds. Returns 0, or -1 with st->abort set.
 */
static int begin_body(struct fetch_state *st)
{
	uint64_t max_bytes = st->opts->max_bytes;
	uint64_t total;

	st->body_started = 1;
	if (st->scheme == FETCH_FILE) {
		st->body_to_sink = 1;
		return 0;
	}
	if (st->status < 200 || st->status >= 300) {
		st->body_to_sink = 0;
		return 0;
	}
	if (st->status == 206) {
		if (!st->requested_range) {
			st->abort = ABORT_UNEXPECTED;
			return -1;
		}
		/* s3rver ignores If-Match, and proxies may too: compare the ETag ourselves. */
		if (st->range_first < 0 || (uint64_t)st->range_first != st->have_bytes ||
		    strcmp(st->etag, st->have_etag) != 0) {
			st->abort = ABORT_RESTART;
			return -1;
		}
		if (st->range_total >= 0 && max_bytes > 0 && (uint64_t)st->range_total > max_bytes) {
			st->abort = ABORT_TOO_BIG;
			return -1;
		}
	} else {
		if (st->have_bytes > 0) {
			/* A full body where we asked for the rest: forget what we hold. */
			cb_log(CB_LOG_INFO,
			       "the server sent the whole body again; restarting at byte 0");
			if (st->sink->restart(st->sink->ctx, &st->sink_err) != CB_OK) {
				st->abort = ABORT_SINK;
				return -1;
			}
			st->have_bytes = 0;
		}
		/* A weak ETag cannot be used with If-Match, so such a body restarts instead. */
		if (st->etag[0] == '"')
			snprintf(st->have_etag, sizeof(st->have_etag), "%s", st->etag);
		else
			st->have_etag[0] = '\0';
		total = st->content_length >= 0 ? (uint64_t)st->content_length : 0;
		if (max_bytes > 0 && total > max_bytes) {
			st->abort = ABORT_TOO_BIG;
			return -1;
		}
		decide_streaming(st);
	}
	st->body_to_sink = 1;
	return 0;
}

static bool sink_has_room(struct fetch_state *st)
{
	return st->sink->room == NULL || st->sink->room(st->sink->ctx);
}

/* The body's next n bytes, in order, to the sink. Returns 0, or -1 with st->abort set. */
static int deliver(struct fetch_state *st, const void *data, size_t n)
{
	uint64_t max_bytes = st->opts->max_bytes;

	if (max_bytes > 0 && st->have_bytes + n > max_bytes) {
		st->abort = ABORT_TOO_BIG;
		return -1;
	}
	if (n > 0 && st->sink->write(st->sink->ctx, data, n, &st->sink_err) != CB_OK) {
		st->abort = ABORT_SINK;
		return -1;
	}
	st->have_bytes += n;
	st->attempt_bytes += n;
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct fetch_state *st = userdata;
	size_t n = size * nmemb;

	if (!st->body_started && begin_body(st) != 0)
		return 0;
	if (st->body_to_sink && (st->hold_body || !sink_has_room(st))) {
		if (!st->hold_body)
			st->room_waits++;
		st->body_paused = 1;
		return CURL_WRITEFUNC_PAUSE; /* libcurl keeps these bytes and gives them again */
	}
	if (!st->body_to_sink) {
		size_t room = sizeof(st->error_body) - st->error_body_size;
		size_t take = n < room ? n : room;
		memcpy(st->error_body + st->error_body_size, data, take);
		st->error_body_size += take;
		if (take < n) {
			st->abort = ABORT_ERROR_BODY;
			return 0;
		}
		return n;
	}
	/* The parts bring the rest: this connection's bytes past the handoff are not needed. */
	if (st->handoff > 0 && st->have_bytes + n >= st->handoff) {
		if (deliver(st, data, (size_t)(st->handoff - st->have_bytes)) == 0)
			st->abort = ABORT_HANDOFF;
		return 0;
	}
	return deliver(st, data, n) == 0 ? n : 0;
}

/* Sleeps ms milliseconds, through signals. */
static void sleep_ms(int64_t ms)
{
	struct timespec left;

	if (ms <= 0)
		return;
	left.tv_sec = (time_t)(ms / 1000);
	left.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&left, &left) != 0 && errno == EINTR) {
	}
}

/* xorshift64*: jitter needs spread, not secrecy. */
static uint64_t jitter_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* Full jitter: a uniform delay in [0, min(cap, base * 2^failures)]. */
static int64_t backoff_ms(uint64_t *rng, unsigned failures)
{
	int64_t ceiling = FETCH_BACKOFF_BASE_MS;

	for (unsigned i = 1; i < failures && ceiling < FETCH_BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > FETCH_BACKOFF_CAP_MS)
		ceiling = FETCH_BACKOFF_CAP_MS;
	return (int64_t)(jitter_next(rng) % (uint64_t)(ceiling + 1));
}

static int status_is_retryable(long status)
{
	return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
	       status == 504;
}

/* Failures worth another attempt: the network or the server hiccuped. */
static int curl_code_is_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		return 1;
	default:
		return 0;
	}
}

static int curl_code_is_connect(CURLcode rc)
{
	return rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
	       rc == CURLE_COULDNT_CONNECT;
}

/*
 * curl's error buffer names hosts and files but, to be safe, is dropped when
 * it could quote a URL's query string or user part.
 */
static const char *curl_reason(CURLcode rc, const char *errbuf)
{
	if (errbuf[0] == '\0' || strpbrk(errbuf, "?@") != NULL || strstr(errbuf, "X-Amz") != NULL)
		return curl_easy_strerror(rc);
	return errbuf;
}

/*
 * The CA bundle: $SSL_CERT_FILE when set, else the first of the usual places
 * that exists. Debian's libcurl looks only at Debian's path, which Amazon
 * Linux (the Lambda runtimes) does not have. NULL: libcurl's default.
 */
static const char *ca_bundle_path(void)
{
	static const char *const known[] = {
		"/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
		"/etc/pki/tls/certs/ca-bundle.crt",   /* Amazon Linux, Fedora, RHEL */
		"/etc/ssl/ca-bundle.pem",             /* openSUSE */
		"/etc/ssl/cert.pem",                  /* Alpine, macOS */
	};
	const char *env = getenv("SSL_CERT_FILE");

	if (env != NULL && env[0] != '\0')
		return env;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (access(known[i], R_OK) == 0)
			return known[i];
	return NULL;
}

static enum cb_status set_common_options(CURL *curl, const struct cb_fetch_options *opts,
					 char *errbuf, curl_write_callback header_fn,
					 curl_write_callback body_fn, void *data)
{
	const char *ca_bundle = ca_bundle_path();
	CURLcode rc = CURLE_OK;

#define SET(option, value)                                          \
	do {                                                        \
		if (rc == CURLE_OK)                                 \
			rc = curl_easy_setopt(curl, option, value); \
	} while (0)
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https,file");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 1L);
	SET(CURLOPT_MAXREDIRS, FETCH_MAX_REDIRECTS);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca_bundle != NULL)
		SET(CURLOPT_CAINFO, ca_bundle);
	SET(CURLOPT_USERAGENT, "coldboot/" COLDBOOT_VERSION);
	SET(CURLOPT_LOW_SPEED_LIMIT, opts->low_speed_bytes_per_s > 0 ?
					     opts->low_speed_bytes_per_s :
					     FETCH_DEFAULT_LOW_SPEED_BYTES_PER_S);
	SET(CURLOPT_LOW_SPEED_TIME,
	    opts->low_speed_time_s > 0 ? opts->low_speed_time_s : FETCH_DEFAULT_LOW_SPEED_TIME_S);
	SET(CURLOPT_BUFFERSIZE, 256L * 1024L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_HEADERFUNCTION, header_fn);
	SET(CURLOPT_HEADERDATA, data);
	SET(CURLOPT_WRITEFUNCTION, body_fn);
	SET(CURLOPT_WRITEDATA, data);
#undef SET
	return rc == CURLE_OK ? CB_OK : CB_E_DOWNLOAD;
}

/* Everything one request needs that does not change between attempts. */
struct fetch_request {
	char url[CB_S3_URL_MAX];           /* what curl GETs */
	char url_text[FETCH_URL_TEXT_MAX]; /* what messages name: redacted */
	struct cb_s3_target s3;
	struct cb_s3_env env;
	int s3_signed; /* an s3:// URL, signed with env's credentials */
};

static enum cb_status prepare_request(struct fetch_state *st, struct fetch_request *req,
				      struct cb_error *err)
{
	const char *url = st->opts->url;
	enum cb_status status = CB_OK;

	cb_url_redact(url, req->url_text, sizeof(req->url_text));
	if (strncmp(url, "s3://", 5) == 0) {
		st->scheme = FETCH_S3;
		cb_s3_env_load(&req->env);
		status = cb_s3_resolve(url, &req->env, &req->s3, err);
		if (status != CB_OK)
			goto out;
		status = cb_s3_check_credentials(&req->env, err);
		if (status != CB_OK)
			goto out;
		snprintf(req->url, sizeof(req->url), "%s", req->s3.url);
		req->s3_signed = 1;
	} else if (starts_with_nocase(url, "https://") || starts_with_nocase(url, "http://") ||
		   starts_with_nocase(url, "file://")) {
		st->scheme = starts_with_nocase(url, "file://") ? FETCH_FILE : FETCH_HTTP;
		if (strlen(url) >= sizeof(req->url)) {
			status = cb_error_set(err, CB_E_CONFIG, 0,
					      "the URL is too long (%zu bytes)", strlen(url));
			goto out;
		}
		snprintf(req->url, sizeof(req->url), "%s", url);
	} else {
		status = cb_error_set(err, CB_E_CONFIG, 0,
				      "unsupported URL %s: use s3://, https://, http:// or file://",
				      req->url_text);
	}
out:
	return status;
}

/* The headers of one request: S3's and, when if_match is not NULL, If-Match. */
static enum cb_status request_headers(const struct fetch_request *req, const char *if_match,
				      struct curl_slist **list)
{
	char line[FETCH_ETAG_MAX + 32];
	struct curl_slist *next;
	size_t token_size;
	char *token_line = NULL;
	enum cb_status status = CB_E_NOMEM;

#define APPEND(text)                                   \
	do {                                           \
		next = curl_slist_append(*list, text); \
		if (next == NULL)                      \
			goto out;                      \
		*list = next;                          \
	} while (0)
	if (req->s3_signed) {
		/*
		 * S3 requires this header and curl 7.88 does not add it; when it is
		 * given, curl signs its value as the payload hash. A GET has no body.
		 */
		APPEND("x-amz-content-sha256: " FETCH_EMPTY_SHA256);
		if (req->env.session_token != NULL && req->env.session_token[0] != '\0') {
			token_size =
				strlen(req->env.session_token) + sizeof("x-amz-security-token: ");
			token_line = malloc(token_size);
			if (token_line == NULL)
				goto out;
			snprintf(token_line, token_size, "x-amz-security-token: %s",
				 req->env.session_token);
			APPEND(token_line);
		}
	}
	if (if_match != NULL) {
		snprintf(line, sizeof(line), "If-Match: %s", if_match);
		APPEND(line);
	}
#undef APPEND
	status = CB_OK;
out:
	if (token_line != NULL) {
		/* curl_slist_append copied it; do not leave the token in freed memory. */
		memset(token_line, 0, token_size);
		free(token_line);
	}
	return status;
}

/* The headers of one attempt of the main GET: If-Match when resuming. */
static enum cb_status attempt_headers(const struct fetch_state *st, const struct fetch_request *req,
				      struct curl_slist **list)
{
	return request_headers(req,
			       st->requested_range && st->have_etag[0] != '\0' ? st->have_etag :
										 NULL,
			       list);
}

/* S3: the path as it is, and a SigV4 signature. Returns 0, or -1 when libcurl refused. */
static int set_s3_options(CURL *curl, const struct fetch_request *req)
{
	/* S3 keys may hold "." and ".." segments: send the path as it is. */
	CURLcode rc = curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);

	if (rc == CURLE_OK)
		rc = curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, req->s3.sigv4);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(curl, CURLOPT_USERNAME, req->env.access_key_id);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(curl, CURLOPT_PASSWORD, req->env.secret_access_key);
	return rc == CURLE_OK ? 0 : -1;
}

static int64_t now_ms(void)
{
	return cb_clock_now_ms();
}

/* Describes an HTTP error reply in err: status, S3's code and message, and what to do. */
static void describe_http_error(const struct fetch_state *st, const struct fetch_request *req,
				const char *prefix, struct cb_error *err)
{
	struct cb_s3_error_reply reply;
	char advice[256];

	cb_s3_error_parse(st->error_body, st->error_body_size, &reply);
	if (st->bucket_region[0] != '\0')
		snprintf(reply.region, sizeof(reply.region), "%s", st->bucket_region);
	cb_s3_error_advice(st->status, &reply, req->s3_signed, advice, sizeof(advice));
	cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: HTTP %ld%s%s%s%s%s", prefix, st->status,
		     reply.code[0] != '\0' ? " " : "", reply.code,
		     reply.message[0] != '\0' ? " (" : "", reply.message,
		     reply.message[0] != '\0' ? ")" : "");
	if (advice[0] != '\0') {
		size_t used = strlen(err->message);
		snprintf(err->message + used, sizeof(err->message) - used, ": %s", advice);
	}
}

/*
 * Classifies how one attempt ended. Fills err for every verdict but DONE:
 * for RETRY it is the reason to report if no attempt is left.
 */
static enum fetch_verdict judge_attempt(struct fetch_state *st, const struct fetch_request *req,
					CURLcode rc, const char *errbuf, const char *prefix,
					struct cb_error *err)
{
	switch (st->abort) {
	case ABORT_SINK:
		*err = st->sink_err;
		return VERDICT_FAIL;
	case ABORT_TOO_BIG:
		cb_error_set(err, CB_E_DOWNLOAD, 0,
			     "%s: the body is larger than the limit of %llu bytes", prefix,
			     (unsigned long long)st->opts->max_bytes);
		return VERDICT_FAIL;
	case ABORT_RESTART:
		cb_error_set(err, CB_E_DOWNLOAD, 0,
			     "%s: the object changed while it was downloaded", prefix);
		return VERDICT_RETRY_NOW;
	case ABORT_CONSUMER:
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: stopped, as unpacking failed", prefix);
		return VERDICT_FAIL;
	case ABORT_UNEXPECTED:
		cb_error_set(err, CB_E_DOWNLOAD, 0,
			     "%s: the server sent part of the body (206) when the whole was asked for",
			     prefix);
		return VERDICT_FAIL;
	case ABORT_ERROR_BODY:
	case ABORT_HANDOFF: /* perform_streaming's to clear */
	case ABORT_NONE:
		break;
	}

	/* Replies without a body (a 3xx without Location, a 204, an empty 412...) end here. */
	if (rc == CURLE_OK && !st->body_started && begin_body(st) != 0)
		return judge_attempt(st, req, CURLE_WRITE_ERROR, errbuf, prefix, err);
	if (st->scheme != FETCH_FILE && st->body_started && !st->body_to_sink) {
		if (st->status == 412) {
			/* If-Match failed: the object changed since the first bytes. */
			cb_error_set(err, CB_E_DOWNLOAD, 0,
				     "%s: the object changed while it was downloaded", prefix);
			return VERDICT_RETRY_NOW;
		}
		describe_http_error(st, req, prefix, err);
		return status_is_retryable(st->status) ? VERDICT_RETRY : VERDICT_FAIL;
	}
	if (rc == CURLE_OK) {
		/* curl checks Content-Length too; this also covers the 206's Content-Range. */
		if (st->scheme != FETCH_FILE &&
		    ((st->content_length >= 0 && st->attempt_bytes != (uint64_t)st->content_length) ||
		     (st->status == 206 && st->range_total >= 0 &&
		      st->have_bytes != (uint64_t)st->range_total))) {
			cb_error_set(err, CB_E_DOWNLOAD, 0,
				     "%s: the body ended after %llu of %lld bytes", prefix,
				     (unsigned long long)st->have_bytes,
				     (long long)(st->status == 206 ? st->range_total :
								     st->content_length));
			return VERDICT_RETRY;
		}
		return VERDICT_DONE;
	}

	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
		/* The first URL's scheme was checked, so this is where a redirect led. */
		cb_error_set(err, CB_E_DOWNLOAD, 0,
			     "%s: refused a redirect to a URL that is not http:// or https://",
			     prefix);
		return VERDICT_FAIL;
	case CURLE_TOO_MANY_REDIRECTS:
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: more than %ld redirects", prefix,
			     FETCH_MAX_REDIRECTS);
		return VERDICT_FAIL;
	case CURLE_PEER_FAILED_VERIFICATION:
		cb_error_set(err, CB_E_DOWNLOAD, 0,
			     "%s: the server's TLS certificate is not trusted (%s)", prefix,
			     curl_reason(rc, errbuf));
		return VERDICT_FAIL;
	case CURLE_FILE_COULDNT_READ_FILE:
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: cannot read the file (%s)", prefix,
			     curl_reason(rc, errbuf));
		return VERDICT_FAIL;
	case CURLE_URL_MALFORMAT:
		cb_error_set(err, CB_E_CONFIG, 0, "%s: malformed URL (%s)", prefix,
			     curl_reason(rc, errbuf));
		return VERDICT_FAIL;
	default:
		break;
	}
	if (st->status > 0 && st->body_to_sink)
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: HTTP %ld, then after %llu bytes: %s",
			     prefix, st->status, (unsigned long long)st->have_bytes,
			     curl_reason(rc, errbuf));
	else
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: %s", prefix, curl_reason(rc, errbuf));
	if (st->scheme != FETCH_FILE && curl_code_is_transient(rc))
		return VERDICT_RETRY;
	return VERDICT_FAIL;
}

static enum cb_status restart_sink(struct fetch_state *st, struct cb_error *err)
{
	enum cb_status status = CB_OK;

	if (st->have_bytes > 0)
		status = st->sink->restart(st->sink->ctx, err);
	st->have_bytes = 0;
	st->have_etag[0] = '\0';
	return status;
}

/* ---- ranges fetched ahead of the body, for unpacking while downloading ---- */

/*
 * One ranged GET on a connection of its own, beside the main GET: the side
 * (one at a time: the tail, then what the unpacker asks for), or a lane (a
 * part of the body, into memory).
 */
struct fetch_side {
	struct fetch_state *st; /* the main GET's: its ETag, total and sink */
	const struct fetch_request *req;
	CURL *curl; /* kept across ranges, so the connection is reused */
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
	uint64_t start, end; /* asked: [start, end) */
	uint64_t got;
	int is_tail;
	int active;
	int body_checked;
	int failed;
	long status;
	int64_t first, last, total; /* its Content-Range */
	char etag[FETCH_ETAG_MAX];
	/* A lane's: its part's memory (NULL: the side, which writes into the sink). */
	unsigned char *buf;
	uint64_t given; /* the part's bytes the sink has */
	int done;       /* the part is whole in buf */
};

static size_t side_on_header(char *buffer, size_t size, size_t nitems, void *userdata)
{
	struct fetch_side *side = userdata;
	size_t n = size * nitems;
	const char *v;
	size_t vs;

	if (is_status_line(buffer, n, &side->status)) {
		side->first = side->last = side->total = -1;
		side->etag[0] = '\0';
		return n;
	}
	if ((v = header_value(buffer, n, "content-range", &vs)) != NULL) {
		parse_range_fields(v, vs, &side->first, &side->last, &side->total);
	} else if ((v = header_value(buffer, n, "etag", &vs)) != NULL && vs < sizeof(side->etag)) {
		memcpy(side->etag, v, vs);
		side->etag[vs] = '\0';
	}
	return n;
}

static size_t side_on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct fetch_side *side = userdata;
	struct fetch_state *st = side->st;
	size_t n = size * nmemb;
	struct cb_error ignored;

	if (!side->body_checked) {
		side->body_checked = 1;
		/*
		 * Exactly the bytes asked for, of the very object the main GET
		 * brings: s3rver answers a suffix range from byte 0 and ignores
		 * If-Match, and a proxy may do either.
		 */
		if (side->status != 206 || side->first != (int64_t)side->start ||
		    side->last != (int64_t)(side->end - 1) ||
		    side->total != (int64_t)st->total_bytes ||
		    strcmp(side->etag, st->have_etag) != 0) {
			side->failed = 1;
			return 0;
		}
	}
	if (n > side->end - side->start - side->got) {
		side->failed = 1;
		return 0;
	}
	cb_error_init(&ignored);
	if (side->buf != NULL) {
		memcpy(side->buf + side->got, data, n);
	} else if (n > 0 && st->sink->write_at(st->sink->ctx, side->start + side->got, data, n,
					       &ignored) != CB_OK) {
		side->failed = 1;
		return 0;
	}
	side->got += n;
	return n;
}

/* Starts the ranged GET of [start, end). Returns 0, or -1 (then nothing runs). */
static int side_start(CURLM *multi, struct fetch_side *side, uint64_t start, uint64_t end,
		      int is_tail, int64_t remaining_ms)
{
	const struct cb_fetch_options *opts = side->st->opts;
	char range[64];
	int64_t connect_ms;

	if (side->curl == NULL) {
		side->curl = curl_easy_init();
		if (side->curl == NULL)
			return -1;
		side->errbuf[0] = '\0';
		if (set_common_options(side->curl, opts, side->errbuf, side_on_header, side_on_body,
				       side) != CB_OK ||
		    curl_easy_setopt(side->curl, CURLOPT_URL, side->req->url) != CURLE_OK ||
		    /* Only where the main GET went: a redirect here is a failure. */
		    curl_easy_setopt(side->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
		    (side->st->scheme == FETCH_S3 && set_s3_options(side->curl, side->req) != 0))
			return -1;
	}
	curl_slist_free_all(side->headers);
	side->headers = NULL;
	if (request_headers(side->req, side->st->have_etag, &side->headers) != CB_OK)
		return -1;
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)start,
		 (unsigned long long)(end - 1));
	connect_ms = connect_timeout_ms(opts, remaining_ms);
	side->start = start;
	side->end = end;
	side->got = 0;
	side->is_tail = is_tail;
	side->body_checked = 0;
	side->failed = 0;
	side->status = 0;
	if (curl_easy_setopt(side->curl, CURLOPT_HTTPHEADER, side->headers) != CURLE_OK ||
	    curl_easy_setopt(side->curl, CURLOPT_RANGE, range) != CURLE_OK ||
	    curl_easy_setopt(side->curl, CURLOPT_TIMEOUT_MS,
			     (long)(remaining_ms > LONG_MAX ? 0 : remaining_ms)) != CURLE_OK ||
	    curl_easy_setopt(side->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms) != CURLE_OK ||
	    curl_multi_add_handle(multi, side->curl) != CURLM_OK)
		return -1;
	side->active = 1;
	side->done = 0;
	side->given = 0;
	return 0;
}

/* The ranged GET ended (or is given up, rc != CURLE_OK): record its bytes, or do without. */
static void side_finish(CURLM *multi, struct fetch_side *side, CURLcode rc)
{
	struct cb_avail *avail = side->st->opts->avail;

	curl_multi_remove_handle(multi, side->curl);
	side->active = 0;
	side->st->hold_body = 0;
	if (rc == CURLE_OK && !side->failed && side->body_checked &&
	    side->got == side->end - side->start) {
		cb_log(CB_LOG_DEBUG, "fetched bytes %llu-%llu ahead of the body",
		       (unsigned long long)side->start, (unsigned long long)(side->end - 1));
		cb_avail_add_range(avail, side->start, side->end);
		return;
	}
	cb_log(CB_LOG_DEBUG, "bytes %llu-%llu could not be fetched ahead (HTTP %ld, %s)",
	       (unsigned long long)side->start, (unsigned long long)(side->end - 1), side->status,
	       side->failed ? "not the range asked for" : curl_reason(rc, side->errbuf));
	/* Without the tail there is no streaming; a later range is only a shortcut. */
	if (side->is_tail)
		cb_avail_disable(avail);
}

/* Starts the next range ahead, when one is wanted and none runs. */
static void side_next(CURLM *multi, struct fetch_side *side, int64_t remaining_ms)
{
	struct fetch_state *st = side->st;
	struct cb_avail *avail = st->opts->avail;
	uint64_t start;
	uint64_t end;

	if (side->active || !cb_avail_usable(avail))
		return;
	if (st->tail_wanted) {
		st->tail_wanted = 0;
		start = st->total_bytes > FETCH_TAIL_BYTES ? st->total_bytes - FETCH_TAIL_BYTES : 0;
		if (side_start(multi, side, start, st->total_bytes, 1, remaining_ms) != 0) {
			side->active = 0;
			cb_avail_disable(avail);
			return;
		}
	} else {
		if (!cb_avail_take_request(avail, &start, &end))
			return;
		/* What the main GET already wrote needs no second copy. */
		if (start < st->have_bytes)
			start = st->have_bytes;
		if (start >= end || end > st->total_bytes)
			return;
		if (side_start(multi, side, start, end, 0, remaining_ms) != 0) {
			side->active = 0;
			return;
		}
	}
	st->hold_body = 1;
	st->hold_since_ms = now_ms();
}

/* ---- parts of the body on more connections, when one connection is slow ---- */

struct fetch_lanes {
	struct fetch_state *st;
	struct fetch_side lane[FETCH_LANES_MAX];
	unsigned count;  /* lanes in use */
	uint64_t next;   /* where the next part starts */
	int decided;     /* whether to use parts is decided once per download */
	int handed_off;  /* the main GET ended at st->handoff: the lanes bring the rest */
	CURLcode failed; /* a lane failed (CURLE_OK: none did) */
	int64_t watch_ms;
	uint64_t watch_bytes;
};

/* Starts the next part on lane, if any is left. Returns 0, or -1 (then the lanes fail). */
static int lane_next(CURLM *multi, struct fetch_lanes *lanes, struct fetch_side *lane,
		     int64_t remaining_ms)
{
	uint64_t total = lane->st->total_bytes;
	uint64_t end;

	if (lanes->next >= total)
		return 0;
	end = total - lanes->next > FETCH_PART_BYTES ? lanes->next + FETCH_PART_BYTES : total;
	if (side_start(multi, lane, lanes->next, end, 0, remaining_ms) != 0) {
		lane->active = 0;
		return -1;
	}
	lanes->next = end;
	return 0;
}

/* Gives every lane up: a part not yet in the sink is fetched again by a resumed GET. */
static void lanes_stop(CURLM *multi, struct fetch_lanes *lanes)
{
	for (unsigned i = 0; i < lanes->count; i++) {
		struct fetch_side *lane = &lanes->lane[i];

		if (lane->active)
			curl_multi_remove_handle(multi, lane->curl);
		lane->active = 0;
		lane->done = 0;
		cb_bigbuf_free(lane->buf, FETCH_PART_BYTES);
		lane->buf = NULL;
	}
	lanes->count = 0;
	lanes->handed_off = 0;
	lanes->failed = CURLE_OK;
	lanes->st->handoff = 0;
}

/*
 * Once the body has come for FETCH_WATCH_MS after the tail: if it came
 * slower than FETCH_SLOW_BYTES_PER_S without ever waiting for the unpacker,
 * and the memory the unpacker leaves holds two parts or more, the lanes
 * start on the parts after the next FETCH_PART_BYTES of the body, which the
 * main GET still brings (st->handoff: it stops there).
 */
static void lanes_consider(CURLM *multi, struct fetch_lanes *lanes, int64_t remaining_ms)
{
	struct fetch_state *st = lanes->st;
	struct cb_avail *avail = st->opts->avail;
	uint64_t rate, spare, left, count;
	int64_t elapsed;
	unsigned i;

	if (lanes->decided || !st->stream_decided || !st->body_started || !st->body_to_sink ||
	    st->hold_body)
		return;
	if (!cb_avail_usable(avail) || st->room_waits > 0) {
		if (st->room_waits > 0)
			cb_log(CB_LOG_DEBUG, "one connection: the body outruns the unpacker");
		lanes->decided = 1;
		return;
	}
	if (lanes->watch_ms == 0) {
		lanes->watch_ms = now_ms();
		lanes->watch_bytes = st->have_bytes;
		return;
	}
	elapsed = now_ms() - lanes->watch_ms;
	if (elapsed < FETCH_WATCH_MS)
		return;
	rate = (st->have_bytes - lanes->watch_bytes) * 1000u / (uint64_t)elapsed;
	if (rate >= FETCH_SLOW_BYTES_PER_S) {
		cb_log(CB_LOG_DEBUG, "one connection: the body comes at %llu MB/s",
		       (unsigned long long)(rate / 1000000u));
		lanes->decided = 1;
		return;
	}
	/* Not planned yet: asked again at the next turn, over a longer time. */
	if (!cb_avail_spare(avail, &spare))
		return;
	lanes->decided = 1;
	left = st->total_bytes - st->have_bytes;
	count = left / FETCH_PART_BYTES;
	count = count > 1 ? count - 1 : 0; /* the main GET brings the next part */
	if (count > spare / FETCH_PART_BYTES)
		count = spare / FETCH_PART_BYTES;
	if (count > FETCH_LANES_MAX)
		count = FETCH_LANES_MAX;
	if (count < 2) {
		cb_log(CB_LOG_DEBUG,
		       "the body comes at %llu MB/s; too little is left of it, or too little "
		       "memory, for parts on more connections",
		       (unsigned long long)(rate / 1000000u));
		return;
	}
	st->handoff = st->have_bytes + FETCH_PART_BYTES;
	lanes->next = st->handoff;
	for (i = 0; i < count; i++) {
		struct fetch_side *lane = &lanes->lane[i];

		lanes->count = i + 1;
		lane->buf = cb_bigbuf_alloc(FETCH_PART_BYTES);
		if (lane->buf == NULL || lane_next(multi, lanes, lane, remaining_ms) != 0)
			break;
	}
	if (i < count) {
		cb_log(CB_LOG_DEBUG, "cannot fetch parts of the body on more connections");
		lanes_stop(multi, lanes);
		return;
	}
	cb_log(CB_LOG_INFO,
	       "the body comes at %llu MB/s on one connection: the rest comes in parts of "
	       "%u MiB on %u more",
	       (unsigned long long)(rate / 1000000u), FETCH_PART_BYTES >> 20, (unsigned)count);
}

/* A lane's GET ended: its part is whole (its next starts once the sink has it), or not. */
static void lanes_finish(CURLM *multi, struct fetch_lanes *lanes, CURL *easy, CURLcode rc,
			 int64_t remaining_ms)
{
	for (unsigned i = 0; i < lanes->count; i++) {
		struct fetch_side *lane = &lanes->lane[i];

		if (!lane->active || lane->curl != easy)
			continue;
		curl_multi_remove_handle(multi, lane->curl);
		lane->active = 0;
		if (rc == CURLE_OK && !lane->failed && lane->body_checked &&
		    lane->got == lane->end - lane->start) {
			lane->done = 1;
			if (lane->given == lane->got &&
			    lane_next(multi, lanes, lane, remaining_ms) != 0)
				lanes->failed = CURLE_OUT_OF_MEMORY;
			return;
		}
		cb_log(CB_LOG_INFO, "bytes %llu-%llu on another connection failed (HTTP %ld, %s)",
		       (unsigned long long)lane->start, (unsigned long long)(lane->end - 1),
		       lane->status,
		       lane->failed ? "not the range asked for" : curl_reason(rc, lane->errbuf));
		lanes->failed = rc != CURLE_OK ? rc : CURLE_PARTIAL_FILE;
		return;
	}
}

/*
 * After the handoff: the lane whose part the body has reached gives the sink
 * what it holds, in order, while the sink has room. Returns 0, or -1 with
 * st->abort set.
 */
static int lanes_deliver(CURLM *multi, struct fetch_lanes *lanes, int64_t remaining_ms)
{
	struct fetch_state *st = lanes->st;

	for (;;) {
		struct fetch_side *lane = NULL;
		size_t n;

		for (unsigned i = 0; i < lanes->count && lane == NULL; i++) {
			struct fetch_side *l = &lanes->lane[i];

			if ((l->active || l->done) && l->given < l->end - l->start &&
			    l->start + l->given == st->have_bytes)
				lane = l;
		}
		if (lane == NULL || lane->got == lane->given || !sink_has_room(st))
			return 0;
		n = (size_t)(lane->got - lane->given);
		if (n > FETCH_DELIVER_BYTES)
			n = FETCH_DELIVER_BYTES;
		if (deliver(st, lane->buf + lane->given, n) != 0)
			return -1;
		lane->given += n;
		if (lane->done && lane->given == lane->got &&
		    lane_next(multi, lanes, lane, remaining_ms) != 0) {
			lanes->failed = CURLE_OUT_OF_MEMORY;
			return 0;
		}
	}
}

/* The unpacker asked for a range, or stopped: the transfer loop looks at once. */
static void wake_multi(void *ctx)
{
	(void)curl_multi_wakeup(ctx);
}

/*
 * curl_easy_perform for the main GET, with the ranges ahead running beside
 * it on the same multi handle, and the lanes once the body reaches their
 * parts. Returns when the body is whole or the attempt failed; a range still
 * running then is given up, and so are the lanes.
 */
static CURLcode perform_streaming(CURLM *multi, CURL *curl, struct fetch_side *side,
				  struct fetch_lanes *lanes, char *errbuf, int64_t remaining_ms)
{
	struct fetch_state *st = side->st;
	int64_t started_ms = now_ms();
	CURLcode main_rc = CURLE_OK;
	int running = 0;

	if (curl_multi_add_handle(multi, curl) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	for (;;) {
		int64_t left_ms = remaining_ms - (now_ms() - started_ms);
		int main_done = 0;
		CURLMsg *msg;
		int left;

		if (curl_multi_perform(multi, &running) != CURLM_OK) {
			main_rc = CURLE_OUT_OF_MEMORY;
			break;
		}
		while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			if (msg->easy_handle == curl) {
				main_rc = msg->data.result;
				main_done = 1;
			} else if (side->active && msg->easy_handle == side->curl) {
				side_finish(multi, side, msg->data.result);
			} else {
				lanes_finish(multi, lanes, msg->easy_handle, msg->data.result,
					     left_ms);
			}
		}
		if (main_done && st->abort == ABORT_HANDOFF) {
			/* Not a failure: the main GET stopped where the lanes' parts begin. */
			curl_multi_remove_handle(multi, curl);
			st->abort = ABORT_NONE;
			errbuf[0] = '\0';
			main_rc = CURLE_OK;
			lanes->handed_off = 1;
		} else if (main_done) {
			break;
		}
		if (lanes->handed_off && lanes->failed == CURLE_OK &&
		    lanes_deliver(multi, lanes, left_ms) != 0) {
			main_rc = CURLE_WRITE_ERROR;
			break;
		}
		if (lanes->failed != CURLE_OK) {
			if (lanes->handed_off) {
				/* What the sink holds stays: the next attempt resumes after it. */
				snprintf(errbuf, CURL_ERROR_SIZE,
					 "a part of the body on another connection failed (%s)",
					 curl_easy_strerror(lanes->failed));
				main_rc = CURLE_PARTIAL_FILE;
				break;
			}
			/* Before the handoff, the main GET just goes on past it. */
			lanes_stop(multi, lanes);
		}
		if (lanes->handed_off && st->have_bytes == st->total_bytes)
			break;
		if (cb_avail_stopped(st->opts->avail)) {
			st->abort = ABORT_CONSUMER;
			main_rc = CURLE_WRITE_ERROR;
			break;
		}
		side_next(multi, side, left_ms);
		lanes_consider(multi, lanes, left_ms);
		/* The tail is in (or will not come): the body goes on. */
		if (st->hold_body && now_ms() - st->hold_since_ms > FETCH_HOLD_BODY_MAX_MS)
			st->hold_body = 0;
		/* Held for the tail, or until the unpacker made room: it wakes the poll. */
		if (!lanes->handed_off && st->body_paused && !st->hold_body && sink_has_room(st)) {
			st->body_paused = 0;
			if (curl_easy_pause(curl, CURLPAUSE_CONT) != CURLE_OK) {
				main_rc = CURLE_RECV_ERROR;
				break;
			}
			continue; /* perform again at once: the kept bytes are delivered */
		}
		if (curl_multi_poll(multi, NULL, 0, FETCH_POLL_MS, NULL) != CURLM_OK) {
			main_rc = CURLE_OUT_OF_MEMORY;
			break;
		}
	}
	curl_multi_remove_handle(multi, curl);
	if (side->active)
		side_finish(multi, side, CURLE_ABORTED_BY_CALLBACK);
	lanes_stop(multi, lanes);
	st->hold_body = 0;
	st->body_paused = 0;
	return main_rc;
}

enum cb_status cb_fetch_to_sink(const struct cb_fetch_options *opts, struct cb_sink *sink,
				struct cb_fetch_result *res, struct cb_error *err)
{
	struct fetch_state st;
	struct fetch_request *req = NULL;
	struct curl_slist *headers = NULL;
	CURL *curl = NULL;
	CURLM *multi = NULL;
	struct fetch_side *side = NULL;
	struct fetch_lanes *lanes = NULL;
	char errbuf[CURL_ERROR_SIZE];
	char range[48];
	char prefix[FETCH_URL_TEXT_MAX + 32];
	enum cb_status status;
	enum fetch_verdict verdict = VERDICT_FAIL;
	int64_t started_ms = now_ms();
	int64_t remaining_ms;
	int64_t wait_ms;
	int64_t connect_ms;
	uint64_t rng;
	unsigned failures = 0;
	unsigned connect_failures = 0;
	uint32_t attempts = 0;
	struct cb_error why; /* the last attempt's failure, reported only if we give up */
	const char *reason;
	size_t used;
	CURLcode rc;

	memset(res, 0, sizeof(*res));
	memset(&st, 0, sizeof(st));
	cb_error_init(&why);
	st.opts = opts;
	st.sink = sink;
	rng = (uint64_t)cb_clock_wall_ms() * UINT64_C(0x9E3779B97F4A7C15);
	rng ^= (uint64_t)getpid() ^ ((uint64_t)started_ms << 20);
	if (rng == 0)
		rng = 1;

	if (opts->url == NULL || opts->url[0] == '\0') {
		status = cb_error_set(err, CB_E_CONFIG, 0, "no URL to download");
		goto out;
	}
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory");
		goto out;
	}
	status = prepare_request(&st, req, err);
	if (status != CB_OK)
		goto out;
	snprintf(prefix, sizeof(prefix), "download of %s failed", req->url_text);

	status = fetch_global_init(err);
	if (status != CB_OK)
		goto out;
	curl = curl_easy_init();
	if (curl == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, 0, "cannot create a libcurl handle");
		goto out;
	}
	errbuf[0] = '\0';
	if (set_common_options(curl, opts, errbuf, on_header, on_body, &st) != CB_OK ||
	    curl_easy_setopt(curl, CURLOPT_URL, req->url) != CURLE_OK) {
		status = cb_error_set(err, CB_E_CONFIG, 0, "libcurl refused the URL %s",
				      req->url_text);
		goto out;
	}
	if (st.scheme == FETCH_S3) {
		if (set_s3_options(curl, req) != 0) {
			status = cb_error_set(
				err, CB_E_DOWNLOAD, 0,
				"this libcurl cannot sign S3 requests (SigV4 needs 7.75 or later)");
			goto out;
		}
	}

	if (opts->avail != NULL) {
		if (st.scheme != FETCH_FILE && sink->write_at != NULL) {
			multi = curl_multi_init();
			side = calloc(1, sizeof(*side));
			lanes = calloc(1, sizeof(*lanes));
		}
		if (multi == NULL || side == NULL || lanes == NULL) {
			/* Local, or no room for it: the body in order only. */
			cb_avail_disable(opts->avail);
		} else {
			side->st = &st;
			side->req = req;
			lanes->st = &st;
			for (unsigned i = 0; i < FETCH_LANES_MAX; i++) {
				lanes->lane[i].st = &st;
				lanes->lane[i].req = req;
			}
			cb_avail_set_waker(opts->avail, wake_multi, multi);
		}
	}

	for (;;) {
		if (opts->avail != NULL && cb_avail_stopped(opts->avail)) {
			status = cb_error_set(err, CB_E_DOWNLOAD, 0,
					      "%s: stopped, as unpacking failed", prefix);
			goto out;
		}
		remaining_ms = opts->deadline_ms > 0 ? opts->deadline_ms - now_ms() : INT64_MAX;
		if (remaining_ms <= 0) {
			if (attempts > 0)
				goto give_up;
			status = cb_error_set(err, CB_E_DOWNLOAD, 0,
					      "%s: the deadline passed before it began", prefix);
			goto out;
		}
		attempts++;
		st.requested_range = st.scheme != FETCH_FILE && st.have_bytes > 0;
		st.body_started = 0;
		st.body_to_sink = 0;
		st.attempt_bytes = 0;
		st.error_body_size = 0;
		st.abort = ABORT_NONE;
		st.redirected = 0;
		cb_error_init(&st.sink_err);
		reset_response(&st);
		errbuf[0] = '\0';

		curl_slist_free_all(headers);
		headers = NULL;
		status = attempt_headers(&st, req, &headers);
		if (status != CB_OK) {
			cb_error_set(err, status, ENOMEM, "out of memory");
			goto out;
		}
		if (st.requested_range)
			snprintf(range, sizeof(range), "%llu-", (unsigned long long)st.have_bytes);
		connect_ms = connect_timeout_ms(opts, remaining_ms);
		if (curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
		    curl_easy_setopt(curl, CURLOPT_RANGE, st.requested_range ? range : NULL) !=
			    CURLE_OK ||
		    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
				     /* 0 is curl's "no limit", for a call without a deadline. */
				     (long)(remaining_ms > LONG_MAX ? 0 : remaining_ms)) !=
			    CURLE_OK ||
		    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms) != CURLE_OK) {
			status = cb_error_set(err, CB_E_DOWNLOAD, 0, "libcurl refused an option");
			goto out;
		}

		if (multi != NULL && side != NULL && lanes != NULL)
			rc = perform_streaming(multi, curl, side, lanes, errbuf, remaining_ms);
		else
			rc = curl_easy_perform(curl);
		if (st.status == 0 && st.scheme != FETCH_FILE) {
			long code = 0;
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
			st.status = code;
		}
		res->http_status = st.scheme == FETCH_FILE ? 0 : st.status;
		cb_error_init(&why);
		verdict = judge_attempt(&st, req, rc, errbuf, prefix, &why);
		if (verdict == VERDICT_DONE) {
			status = CB_OK;
			break;
		}
		if (verdict == VERDICT_FAIL) {
			*err = why;
			status = why.code;
			goto out;
		}
		if (verdict == VERDICT_RETRY_NOW) {
			status = restart_sink(&st, err);
			if (status != CB_OK)
				goto out;
		}
		if (st.attempt_bytes > 0) {
			failures = 0;
		} else {
			failures++;
		}
		if (curl_code_is_connect(rc))
			connect_failures++;
		if (attempts >= FETCH_MAX_ATTEMPTS || failures >= FETCH_MAX_FAILURES_IN_A_ROW ||
		    connect_failures >= FETCH_MAX_CONNECT_FAILURES)
			goto give_up;
		/* Without an ETag a partial body cannot be resumed safely. */
		if (verdict == VERDICT_RETRY && st.have_bytes > 0 && st.have_etag[0] == '\0') {
			status = restart_sink(&st, err);
			if (status != CB_OK)
				goto out;
		}
		wait_ms = verdict == VERDICT_RETRY_NOW ?
				  0 :
				  backoff_ms(&rng, failures > 0 ? failures : 1);
		if (verdict == VERDICT_RETRY && st.retry_after_s >= 0 &&
		    st.retry_after_s * 1000L > wait_ms)
			wait_ms = st.retry_after_s * 1000L;
		remaining_ms = opts->deadline_ms > 0 ? opts->deadline_ms - now_ms() : INT64_MAX;
		if (wait_ms >= remaining_ms && verdict == VERDICT_RETRY && st.retry_after_s >= 0) {
			/* Sleeping past the deadline only to fail then helps nobody. */
			used = strlen(why.message);
			snprintf(why.message + used, sizeof(why.message) - used,
				 "; the server asked to retry after %ld s, past the deadline",
				 st.retry_after_s);
			goto give_up;
		}
		if (wait_ms >= remaining_ms) {
			/* Our own backoff may shrink to leave room for one more attempt. */
			if (remaining_ms <= (int64_t)2 * FETCH_BACKOFF_BASE_MS)
				goto give_up;
			wait_ms = (int64_t)(jitter_next(&rng) % (uint64_t)(remaining_ms / 2));
		}
		reason = why.message;
		if (strncmp(reason, prefix, strlen(prefix)) == 0 && reason[strlen(prefix)] == ':')
			reason += strlen(prefix) + 2;
		cb_log(CB_LOG_INFO, "attempt %u for %s failed (%s); retrying in %lld ms", attempts,
		       req->url_text, reason, (long long)wait_ms);
		sleep_ms(wait_ms);
	}
	cb_log(CB_LOG_INFO, "downloaded %s: %llu bytes in %lld ms, %u attempt%s", req->url_text,
	       (unsigned long long)st.have_bytes, (long long)(now_ms() - started_ms), attempts,
	       attempts == 1 ? "" : "s");
	goto out;

give_up:
	/* Something transient did not go away: report the last reason and how hard we tried. */
	*err = why;
	used = strlen(err->message);
	snprintf(err->message + used, sizeof(err->message) - used,
		 " (gave up after %u attempt%s in %lld ms)", attempts, attempts == 1 ? "" : "s",
		 (long long)(now_ms() - started_ms));
	status = CB_E_DOWNLOAD;
out:
	res->attempts = attempts;
	res->bytes = st.have_bytes;
	if (status != CB_OK && req != NULL && attempts > 0)
		cb_log(CB_LOG_INFO, "download of %s: %u attempt%s, %lld ms", req->url_text,
		       attempts, attempts == 1 ? "" : "s", (long long)(now_ms() - started_ms));
	curl_slist_free_all(headers);
	if (curl != NULL)
		curl_easy_cleanup(curl);
	if (opts->avail != NULL && multi != NULL)
		cb_avail_set_waker(opts->avail, NULL, NULL);
	if (side != NULL) {
		if (side->curl != NULL)
			curl_easy_cleanup(side->curl);
		curl_slist_free_all(side->headers);
		free(side);
	}
	if (lanes != NULL) {
		for (unsigned i = 0; i < FETCH_LANES_MAX; i++) {
			if (lanes->lane[i].curl != NULL)
				curl_easy_cleanup(lanes->lane[i].curl);
			curl_slist_free_all(lanes->lane[i].headers);
			free(lanes->lane[i].buf);
		}
		free(lanes);
	}
	if (multi != NULL)
		curl_multi_cleanup(multi);
	free(req);
	return status;
}
