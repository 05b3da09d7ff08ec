/*
 * Unpacking while downloading, the download's side: beside the main GET
 * (fetch.c), on a multi handle, the ranges the unpacker needs ahead of the
 * body (the zip's tail, then its central directory) on a second connection,
 * and, when one connection brings the body slowly, the rest of it in parts
 * on more connections, handed to the sink in order.
 */
#include "fetch_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bigbuf.h"
#include "http_header.h"

/*
 * The tail fetched ahead: libzip 1.7.3 looks for the end record in the last
 * 65,577 bytes (the largest comment plus the end record and zip64 locator),
 * and every read of the unpacker must find its bytes present.
 */
#define FETCH_TAIL_BYTES (128u * 1024u)
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

	if (cb_http_status_line(buffer, n, &side->status)) {
		side->first = side->last = side->total = -1;
		side->etag[0] = '\0';
		return n;
	}
	if ((v = cb_http_header_value(buffer, n, "content-range", &vs)) != NULL) {
		cb_http_range_fields(v, vs, &side->first, &side->last, &side->total);
	} else if ((v = cb_http_header_value(buffer, n, "etag", &vs)) != NULL &&
		   vs < sizeof(side->etag)) {
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
		if (fetch_set_common_options(side->curl, opts, side->errbuf, side_on_header,
					     side_on_body, side) != CB_OK ||
		    curl_easy_setopt(side->curl, CURLOPT_URL, side->req->url) != CURLE_OK ||
		    /* Only where the main GET went: a redirect here is a failure. */
		    curl_easy_setopt(side->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
		    (side->st->scheme == FETCH_S3 &&
		     fetch_set_s3_options(side->curl, side->req) != 0))
			return -1;
	}
	curl_slist_free_all(side->headers);
	side->headers = NULL;
	if (fetch_request_headers(side->req, side->st->have_etag, &side->headers) != CB_OK)
		return -1;
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)start,
		 (unsigned long long)(end - 1));
	connect_ms = fetch_connect_timeout_ms(opts, remaining_ms);
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
	       side->failed ? "not the range asked for" : fetch_curl_reason(rc, side->errbuf));
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
	st->hold_since_ms = cb_clock_now_ms();
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

struct fetch_ahead {
	CURLM *multi; /* the main GET's, the side's and the lanes' transfers */
	struct fetch_side side;
	struct fetch_lanes lanes;
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
		lanes->watch_ms = cb_clock_now_ms();
		lanes->watch_bytes = st->have_bytes;
		return;
	}
	elapsed = cb_clock_now_ms() - lanes->watch_ms;
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
		       lane->failed ? "not the range asked for" :
				      fetch_curl_reason(rc, lane->errbuf));
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
		if (lane == NULL || lane->got == lane->given || !fetch_sink_has_room(st))
			return 0;
		n = (size_t)(lane->got - lane->given);
		if (n > FETCH_DELIVER_BYTES)
			n = FETCH_DELIVER_BYTES;
		if (fetch_deliver(st, lane->buf + lane->given, n) != 0)
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

struct fetch_ahead *fetch_ahead_new(struct fetch_state *st, const struct fetch_request *req)
{
	struct fetch_ahead *ahead = calloc(1, sizeof(*ahead));

	if (ahead == NULL)
		return NULL;
	ahead->multi = curl_multi_init();
	if (ahead->multi == NULL) {
		free(ahead);
		return NULL;
	}
	ahead->side.st = st;
	ahead->side.req = req;
	ahead->lanes.st = st;
	for (unsigned i = 0; i < FETCH_LANES_MAX; i++) {
		ahead->lanes.lane[i].st = st;
		ahead->lanes.lane[i].req = req;
	}
	cb_avail_set_waker(st->opts->avail, wake_multi, ahead->multi);
	return ahead;
}

/* A side's or a lane's handle and headers, once its transfer is off the multi handle. */
static void side_clean_up(struct fetch_side *side)
{
	if (side->curl != NULL)
		curl_easy_cleanup(side->curl);
	curl_slist_free_all(side->headers);
}

void fetch_ahead_destroy(struct fetch_ahead *ahead)
{
	if (ahead == NULL)
		return;
	cb_avail_set_waker(ahead->side.st->opts->avail, NULL, NULL);
	lanes_stop(ahead->multi, &ahead->lanes); /* their parts' memory */
	side_clean_up(&ahead->side);
	for (unsigned i = 0; i < FETCH_LANES_MAX; i++)
		side_clean_up(&ahead->lanes.lane[i]);
	curl_multi_cleanup(ahead->multi);
	free(ahead);
}

CURLcode fetch_ahead_perform(struct fetch_ahead *ahead, CURL *curl, char *errbuf,
			     int64_t remaining_ms)
{
	CURLM *multi = ahead->multi;
	struct fetch_side *side = &ahead->side;
	struct fetch_lanes *lanes = &ahead->lanes;
	struct fetch_state *st = side->st;
	int64_t started_ms = cb_clock_now_ms();
	CURLcode main_rc = CURLE_OK;
	int running = 0;

	if (curl_multi_add_handle(multi, curl) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	for (;;) {
		int64_t left_ms = remaining_ms - (cb_clock_now_ms() - started_ms);
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
		if (st->hold_body && cb_clock_now_ms() - st->hold_since_ms > FETCH_HOLD_BODY_MAX_MS)
			st->hold_body = 0;
		/* Held for the tail, or until the unpacker made room: it wakes the poll. */
		if (!lanes->handed_off && st->body_paused && !st->hold_body &&
		    fetch_sink_has_room(st)) {
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
