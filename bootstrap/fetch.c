/*
 * Downloads a URL into a sink with the libcurl easy API: file://, http://,
 * https:// and s3:// (signed with CURLOPT_AWS_SIGV4). Retries what is worth
 * retrying with exponential backoff and full jitter inside one overall
 * deadline, and resumes an interrupted body with Range + If-Match. With an
 * avail, the ranges ahead and the parts on more connections are
 * fetch_ahead.c's. These two are the only files that include curl/curl.h.
 */
#include "fetch_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_header.h"

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
/* SHA-256 of an empty body: the payload hash of a GET. */
#define FETCH_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Smaller objects are not worth a second connection: they arrive at once. */
#define FETCH_STREAM_MIN_BYTES (1024u * 1024u)

/* How one attempt ended. */
enum fetch_verdict {
	VERDICT_DONE,      /* the whole body is in the sink */
	VERDICT_RETRY,     /* transient: back off and try again (resuming when possible) */
	VERDICT_RETRY_NOW, /* start again from byte 0 at once */
	VERDICT_FAIL,      /* err is filled */
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

/* The connect timeout of an attempt: the configured one, never past the deadline. */
int64_t fetch_connect_timeout_ms(const struct cb_fetch_options *opts, int64_t remaining_ms)
{
	int64_t ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms :
						    FETCH_DEFAULT_CONNECT_TIMEOUT_MS;

	return ms > remaining_ms ? remaining_ms : ms;
}

static void parse_content_range(struct fetch_state *st, const char *v, size_t size)
{
	int64_t first;
	int64_t last;
	int64_t total;

	cb_http_range_fields(v, size, &first, &last, &total);
	if (first < 0)
		return;
	st->range_first = first;
	if (total >= 0)
		st->range_total = total;
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

	if (cb_http_status_line(buffer, n, &status)) {
		reset_response(st);
		st->status = status;
		if (st->status >= 300 && st->status < 400)
			st->redirected = 1;
		return n;
	}
	if ((v = cb_http_header_value(buffer, n, "content-length", &vs)) != NULL) {
		if (cb_http_parse_count(v, vs, &number) == 0)
			st->content_length = number;
	} else if ((v = cb_http_header_value(buffer, n, "content-range", &vs)) != NULL) {
		parse_content_range(st, v, vs);
	} else if ((v = cb_http_header_value(buffer, n, "etag", &vs)) != NULL) {
		if (vs < sizeof(st->etag)) {
			memcpy(st->etag, v, vs);
			st->etag[vs] = '\0';
		}
	} else if ((v = cb_http_header_value(buffer, n, "retry-after", &vs)) != NULL) {
		/* Only the delay-seconds form; an HTTP-date falls back to our own backoff. */
		if (cb_http_parse_count(v, vs, &number) == 0)
			st->retry_after_s = number > 3600 ? 3600 : (long)number;
	} else if ((v = cb_http_header_value(buffer, n, "x-amz-bucket-region", &vs)) != NULL) {
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

bool fetch_sink_has_room(struct fetch_state *st)
{
	return st->sink->room == NULL || st->sink->room(st->sink->ctx);
}

/* The body's next n bytes, in order, to the sink. Returns 0, or -1 with st->abort set. */
int fetch_deliver(struct fetch_state *st, const void *data, size_t n)
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
	if (st->body_to_sink && (st->hold_body || !fetch_sink_has_room(st))) {
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
		if (fetch_deliver(st, data, (size_t)(st->handoff - st->have_bytes)) == 0)
			st->abort = ABORT_HANDOFF;
		return 0;
	}
	return fetch_deliver(st, data, n) == 0 ? n : 0;
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
const char *fetch_curl_reason(CURLcode rc, const char *errbuf)
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

enum cb_status fetch_set_common_options(CURL *curl, const struct cb_fetch_options *opts,
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
	} else if (cb_http_starts_with_nocase(url, "https://") ||
		   cb_http_starts_with_nocase(url, "http://") ||
		   cb_http_starts_with_nocase(url, "file://")) {
		st->scheme = cb_http_starts_with_nocase(url, "file://") ? FETCH_FILE : FETCH_HTTP;
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
enum cb_status fetch_request_headers(const struct fetch_request *req, const char *if_match,
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
	return fetch_request_headers(req,
				     st->requested_range && st->have_etag[0] != '\0' ?
					     st->have_etag :
					     NULL,
				     list);
}

/* S3: the path as it is, and a SigV4 signature. Returns 0, or -1 when libcurl refused. */
int fetch_set_s3_options(CURL *curl, const struct fetch_request *req)
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
			     fetch_curl_reason(rc, errbuf));
		return VERDICT_FAIL;
	case CURLE_FILE_COULDNT_READ_FILE:
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: cannot read the file (%s)", prefix,
			     fetch_curl_reason(rc, errbuf));
		return VERDICT_FAIL;
	case CURLE_URL_MALFORMAT:
		cb_error_set(err, CB_E_CONFIG, 0, "%s: malformed URL (%s)", prefix,
			     fetch_curl_reason(rc, errbuf));
		return VERDICT_FAIL;
	default:
		break;
	}
	if (st->status > 0 && st->body_to_sink)
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: HTTP %ld, then after %llu bytes: %s",
			     prefix, st->status, (unsigned long long)st->have_bytes,
			     fetch_curl_reason(rc, errbuf));
	else
		cb_error_set(err, CB_E_DOWNLOAD, 0, "%s: %s", prefix, fetch_curl_reason(rc, errbuf));
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

enum cb_status cb_fetch_to_sink(const struct cb_fetch_options *opts, struct cb_sink *sink,
				struct cb_fetch_result *res, struct cb_error *err)
{
	struct fetch_state st;
	struct fetch_request *req = NULL;
	struct curl_slist *headers = NULL;
	CURL *curl = NULL;
	struct fetch_ahead *ahead = NULL;
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
	if (fetch_set_common_options(curl, opts, errbuf, on_header, on_body, &st) != CB_OK ||
	    curl_easy_setopt(curl, CURLOPT_URL, req->url) != CURLE_OK) {
		status = cb_error_set(err, CB_E_CONFIG, 0, "libcurl refused the URL %s",
				      req->url_text);
		goto out;
	}
	if (st.scheme == FETCH_S3) {
		if (fetch_set_s3_options(curl, req) != 0) {
			status = cb_error_set(
				err, CB_E_DOWNLOAD, 0,
				"this libcurl cannot sign S3 requests (SigV4 needs 7.75 or later)");
			goto out;
		}
	}

	if (opts->avail != NULL) {
		if (st.scheme != FETCH_FILE && sink->write_at != NULL)
			ahead = fetch_ahead_new(&st, req);
		/* Local, or no room for it: the body in order only. */
		if (ahead == NULL)
			cb_avail_disable(opts->avail);
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
		connect_ms = fetch_connect_timeout_ms(opts, remaining_ms);
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

		if (ahead != NULL)
			rc = fetch_ahead_perform(ahead, curl, errbuf, remaining_ms);
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
	fetch_ahead_destroy(ahead);
	free(req);
	return status;
}
