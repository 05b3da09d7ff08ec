/*
 * `coldboot stats`: reads stats records and prints what they say about
 * container reuse.
 *
 * Inputs, in any mix: our JSON lines (--stats=FILE), our CloudWatch EMF lines,
 * CloudWatch Logs exports (the JSON of `aws logs filter-log-events`, its
 * `--output text` lines, `aws logs tail` lines, `jq -c '.events[]'` lines),
 * and Lambda's REPORT lines, which count invocations per log stream. Any other
 * line is counted and skipped. Every input is bounded: lines longer than
 * LINE_MAX_BYTES are skipped, a JSON document is read whole only up to
 * DOCUMENT_MAX_BYTES, and the number of records is capped (--max-records).
 *
 * A record is identified by (container, start), so the same start seen twice
 * (overlapping exports, or a JSONL file and the logs of the same runs) is
 * counted once.
 */
#define _GNU_SOURCE /* memmem */

#include "stats_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cache/cache.h"
#include "stats_json.h"
#include "stats_svg.h"

#define LINE_MAX_BYTES (64 * 1024)
#define READ_CHUNK_BYTES (64 * 1024)
#define DOCUMENT_MAX_BYTES ((size_t)1 << 30)
#define DEFAULT_MAX_RECORDS 1000000
#define MAX_RECORDS_LIMIT 100000000
#define CONTAINER_ID_MAX 64
#define STREAM_NAME_MAX 512
#define REQUEST_ID_MAX 128
#define ERROR_KINDS_MAX 1000
#define ERROR_KIND_MAX 64
#define SVG_ROWS_MAX 500
#define SVG_MARKS_MAX 200000
/* Nesting of log formats: an export event's message holding a wrapped log line. */
#define MESSAGE_DEPTH_MAX 2
#define NONE UINT32_MAX

struct record {
	int64_t ts_ms; /* -1 when unknown */
	int64_t total_ms;
	int64_t fetch_ms;
	uint64_t start;
	uint64_t bytes;
	uint32_t container;  /* index into containers, or NONE */
	uint32_t stream;     /* index into streams, or NONE */
	uint32_t error_kind; /* index into kinds, or NONE */
	unsigned char outcome;
	unsigned char has_start;
};

/* A container's lifetime record ("outcome":"shutdown"), written by the extension at SHUTDOWN. */
struct lifetime {
	int64_t ts_ms; /* -1 when unknown */
	int64_t alive_ms;
	uint64_t invocations;
	uint64_t downloads;
	uint32_t container; /* index into containers, or NONE */
	uint32_t reason;    /* index into reasons, or NONE */
	unsigned char has_downloads;
};

/* Interned strings: an arena of NUL-terminated strings and an open-addressing index. */
struct strtab {
	char *arena;
	size_t arena_len;
	size_t arena_cap;
	size_t *offsets;
	size_t count;
	size_t offsets_cap;
	uint32_t *slots; /* index + 1, 0 when empty */
	size_t slots_cap;
	size_t max_count;
};

struct stats {
	struct record *records;
	size_t count;
	size_t capacity;
	size_t max_records;
	struct strtab containers;
	struct strtab streams;
	struct strtab kinds;
	struct strtab request_ids;
	uint32_t *report_streams; /* one per REPORT: the log stream, or NONE */
	size_t reports;
	size_t reports_capacity;
	uint32_t *id_report; /* request id index -> its REPORT's index */
	size_t id_report_capacity;
	uint64_t init_reports; /* REPORTs with an Init Duration: cold inits */
	uint64_t ignored;      /* lines and values that are not ours */
	uint64_t too_long;
	uint64_t duplicates;
	uint64_t duplicate_reports;
	uint64_t unnamed_kinds;
	struct lifetime *lifetimes;
	size_t lifetime_count;
	size_t lifetime_capacity;
	struct strtab reasons;
	uint64_t duplicate_lifetimes;
	char *scratch[MESSAGE_DEPTH_MAX]; /* decoded messages, one per nesting level */
	enum cb_status failed;            /* set when reading must stop */
	char failure[CB_ERROR_MESSAGE_MAX + 64];
};

struct options {
	int json;
	const char *svg_path;
	size_t max_records;
	char **files;
	int file_count;
};

/* ---- interned strings ---- */

static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void strtab_free(struct strtab *t)
{
	free(t->arena);
	free(t->offsets);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static const char *strtab_get(const struct strtab *t, uint32_t index)
{
	return t->arena + t->offsets[index];
}

static int strtab_grow_slots(struct strtab *t)
{
	size_t cap = t->slots_cap != 0 ? 2 * t->slots_cap : 64;
	uint32_t *slots = calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < t->count; i++) {
		const char *s = strtab_get(t, (uint32_t)i);
		size_t j = (size_t)hash_bytes(s, strlen(s)) & (cap - 1);

		while (slots[j] != 0)
			j = (j + 1) & (cap - 1);
		slots[j] = (uint32_t)i + 1;
	}
	free(t->slots);
	t->slots = slots;
	t->slots_cap = cap;
	return 0;
}

/*
 * Finds or adds s. Returns 0 with *index set (*is_new when added), -1 when
 * out of memory, -2 when the table is full (max_count).
 */
static int strtab_intern(struct strtab *t, const char *s, size_t len, uint32_t *index, int *is_new)
{
	size_t j;

	if ((t->count + 1) * 2 > t->slots_cap && strtab_grow_slots(t) != 0)
		return -1;
	for (j = (size_t)hash_bytes(s, len) & (t->slots_cap - 1); t->slots[j] != 0;
	     j = (j + 1) & (t->slots_cap - 1)) {
		const char *e = strtab_get(t, t->slots[j] - 1);

		if (memcmp(e, s, len) == 0 && e[len] == '\0') {
			*index = t->slots[j] - 1;
			if (is_new != NULL)
				*is_new = 0;
			return 0;
		}
	}
	if (t->count >= t->max_count)
		return -2;
	if (t->arena_len + len + 1 > t->arena_cap) {
		size_t cap = t->arena_cap != 0 ? t->arena_cap : 4096;
		char *arena;

		while (cap < t->arena_len + len + 1)
			cap *= 2;
		arena = realloc(t->arena, cap);
		if (arena == NULL)
			return -1;
		t->arena = arena;
		t->arena_cap = cap;
	}
	if (t->count == t->offsets_cap) {
		size_t cap = t->offsets_cap != 0 ? 2 * t->offsets_cap : 64;
		size_t *offsets = realloc(t->offsets, cap * sizeof(*offsets));

		if (offsets == NULL)
			return -1;
		t->offsets = offsets;
		t->offsets_cap = cap;
	}
	memcpy(t->arena + t->arena_len, s, len);
	t->arena[t->arena_len + len] = '\0';
	t->offsets[t->count] = t->arena_len;
	t->arena_len += len + 1;
	t->slots[j] = (uint32_t)t->count + 1;
	*index = (uint32_t)t->count;
	t->count++;
	if (is_new != NULL)
		*is_new = 1;
	return 0;
}

/* ---- state ---- */

static void stats_fail(struct stats *st, enum cb_status code, const char *what)
{
	if (st->failed != CB_OK)
		return;
	st->failed = code;
	snprintf(st->failure, sizeof(st->failure), "%s", what);
}

static void stats_fail_intern(struct stats *st, int rc, const char *what)
{
	if (rc == -1)
		stats_fail(st, CB_E_NOMEM, "out of memory");
	else
		stats_fail(st, CB_E_CONFIG, what);
}

static int stats_init(struct stats *st, size_t max_records)
{
	memset(st, 0, sizeof(*st));
	st->max_records = max_records;
	st->containers.max_count = max_records;
	st->streams.max_count = max_records;
	st->kinds.max_count = ERROR_KINDS_MAX;
	st->request_ids.max_count = max_records;
	st->reasons.max_count = ERROR_KINDS_MAX;
	for (int i = 0; i < MESSAGE_DEPTH_MAX; i++) {
		st->scratch[i] = malloc(LINE_MAX_BYTES + 1);
		if (st->scratch[i] == NULL)
			return -1;
	}
	return 0;
}

static void stats_free(struct stats *st)
{
	free(st->records);
	free(st->report_streams);
	free(st->id_report);
	strtab_free(&st->containers);
	strtab_free(&st->streams);
	strtab_free(&st->kinds);
	strtab_free(&st->request_ids);
	strtab_free(&st->reasons);
	free(st->lifetimes);
	for (int i = 0; i < MESSAGE_DEPTH_MAX; i++)
		free(st->scratch[i]);
}

/* ---- small parsers ---- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era;
	int64_t yoe;
	int64_t doy;
	int64_t doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int read_digits(const char *s, size_t n, int64_t *out)
{
	int64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Parses RFC 3339 ("2026-11-22T07:47:41.123Z", any fraction, Z or an offset) to epoch ms. */
static int parse_rfc3339(const char *s, int64_t *out_ms)
{
	int64_t year, month, day, hour, minute, second;
	int64_t ms = 0;
	int64_t offset_min = 0;
	const char *p;

	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
		return -1;
	if (read_digits(s, 4, &year) || read_digits(s + 5, 2, &month) ||
	    read_digits(s + 8, 2, &day) || read_digits(s + 11, 2, &hour) ||
	    read_digits(s + 14, 2, &minute) || read_digits(s + 17, 2, &second))
		return -1;
	if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
	    second > 60)
		return -1;
	p = s + 19;
	if (*p == '.') {
		int64_t scale = 100;

		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int64_t oh, om;

		if (strlen(p) < 6 || p[3] != ':' || read_digits(p + 1, 2, &oh) ||
		    read_digits(p + 4, 2, &om))
			return -1;
		offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	*out_ms = ((days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
		    offset_min * 60) *
		   1000) +
		  ms;
	return 0;
}

static int outcome_from_name(const struct cb_stats_json_value *v)
{
	for (int o = CB_OUTCOME_REUSE; o <= CB_OUTCOME_ERROR; o++) {
		if (cb_stats_json_string_is(v, cb_outcome_name((enum cb_outcome)o)))
			return o;
	}
	return -1;
}

/* Ids and kinds are printed and drawn: only printable ASCII is ours. */
static int is_printable_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	}
	return len > 0;
}

static uint32_t intern_stream(struct stats *st, const char *stream, size_t len)
{
	uint32_t index = NONE;
	int rc;

	if (stream == NULL || len == 0)
		return NONE;
	rc = strtab_intern(&st->streams, stream, len, &index, NULL);
	if (rc != 0) {
		stats_fail_intern(st, rc, "too many log streams");
		return NONE;
	}
	return index;
}

/* ---- records ---- */

static int member_i64(const struct cb_stats_json_value *obj, const char *key, int64_t *out)
{
	struct cb_stats_json_value v;

	if (cb_stats_json_member(obj, key, &v) != 0)
		return -1;
	return cb_stats_json_i64(&v, out);
}

static void append_record(struct stats *st, const struct record *r)
{
	if (st->count == st->max_records) {
		char what[160];

		snprintf(what, sizeof(what),
			 "more than %zu records; split the input by time, or raise --max-records",
			 st->max_records);
		stats_fail(st, CB_E_CONFIG, what);
		return;
	}
	if (st->count == st->capacity) {
		size_t cap = st->capacity != 0 ? 2 * st->capacity : 1024;
		struct record *records;

		if (cap > st->max_records)
			cap = st->max_records;
		records = realloc(st->records, cap * sizeof(*records));
		if (records == NULL) {
			stats_fail(st, CB_E_NOMEM, "out of memory");
			return;
		}
		st->records = records;
		st->capacity = cap;
	}
	st->records[st->count++] = *r;
}

/* Reads a number of seconds ("alive_s": 1800.5) as milliseconds. */
static int member_seconds_ms(const struct cb_stats_json_value *obj, const char *key, int64_t *out)
{
	struct cb_stats_json_value v;
	char text[64];
	size_t len;
	char *end;
	double seconds;

	if (cb_stats_json_member(obj, key, &v) != 0 || v.type != CB_STATS_JSON_NUMBER)
		return -1;
	len = (size_t)(v.end - v.begin);
	if (len >= sizeof(text))
		return -1;
	memcpy(text, v.begin, len);
	text[len] = '\0';
	seconds = strtod(text, &end);
	if (*end != '\0' || !(seconds >= 0 && seconds < 9.2e15))
		return -1;
	*out = (int64_t)(seconds * 1000.0 + 0.5);
	return 0;
}

static int64_t record_time(const struct cb_stats_json_value *obj, int64_t event_ts_ms)
{
	struct cb_stats_json_value v;
	struct cb_stats_json_value aws;
	char text[64];
	int64_t n;

	if (cb_stats_json_member(obj, "ts", &v) == 0 &&
	    cb_stats_json_string(&v, text, sizeof(text), NULL) == 0 && parse_rfc3339(text, &n) == 0)
		return n;
	if (cb_stats_json_member(obj, "_aws", &aws) == 0 && member_i64(&aws, "Timestamp", &n) == 0)
		return n;
	return event_ts_ms;
}

/*
 * Reads the "container" member: 1 with *index set (NONE for null), 0 when it
 * is missing or not a container id of ours, -1 when the table is full.
 */
static int record_container(struct stats *st, const struct cb_stats_json_value *obj, uint32_t *index)
{
	struct cb_stats_json_value v;
	char id[CONTAINER_ID_MAX + 1];
	size_t len;
	int rc;

	*index = NONE;
	if (cb_stats_json_member(obj, "container", &v) != 0)
		return 0;
	if (v.type == CB_STATS_JSON_NULL)
		return 1;
	if (cb_stats_json_string(&v, id, sizeof(id), &len) != 0 || !is_printable_ascii(id, len))
		return 0;
	rc = strtab_intern(&st->containers, id, len, index, NULL);
	if (rc != 0) {
		stats_fail_intern(st, rc, "too many containers");
		return -1;
	}
	return 1;
}

/*
 * A lifetime record: {"outcome":"shutdown","container":...,"invocations":N,
 * "alive_s":S,"shutdown_reason":...,"downloads":N}. Returns 1 when taken.
 */
static int try_lifetime(struct stats *st, const struct cb_stats_json_value *obj, int64_t event_ts_ms)
{
	struct cb_stats_json_value v;
	struct lifetime l;
	char reason[ERROR_KIND_MAX + 1];
	size_t len;
	int64_t n;
	int rc;

	memset(&l, 0, sizeof(l));
	if (cb_stats_json_member(obj, "outcome", &v) != 0 ||
	    !cb_stats_json_string_is(&v, "shutdown") || member_i64(obj, "invocations", &n) != 0 ||
	    n < 0)
		return 0;
	l.invocations = (uint64_t)n;
	rc = record_container(st, obj, &l.container);
	if (rc <= 0)
		return rc < 0;
	if (member_seconds_ms(obj, "alive_s", &l.alive_ms) != 0)
		l.alive_ms = -1;
	if (member_i64(obj, "downloads", &n) == 0 && n >= 0) {
		l.downloads = (uint64_t)n;
		l.has_downloads = 1;
	}
	l.ts_ms = record_time(obj, event_ts_ms);
	if (cb_stats_json_member(obj, "shutdown_reason", &v) != 0 ||
	    cb_stats_json_string(&v, reason, sizeof(reason), &len) != 0 ||
	    !is_printable_ascii(reason, len)) {
		strcpy(reason, "unknown");
		len = strlen(reason);
	}
	rc = strtab_intern(&st->reasons, reason, len, &l.reason, NULL);
	if (rc == -1) {
		stats_fail_intern(st, rc, "");
		return 1;
	}
	if (rc == -2)
		l.reason = NONE; /* past ERROR_KINDS_MAX distinct reasons */
	if (st->lifetime_count == st->max_records) {
		stats_fail(st, CB_E_CONFIG, "too many lifetime records; split the input by time");
		return 1;
	}
	if (st->lifetime_count == st->lifetime_capacity) {
		size_t cap = st->lifetime_capacity != 0 ? 2 * st->lifetime_capacity : 256;
		struct lifetime *lifetimes = realloc(st->lifetimes, cap * sizeof(*lifetimes));

		if (lifetimes == NULL) {
			stats_fail(st, CB_E_NOMEM, "out of memory");
			return 1;
		}
		st->lifetimes = lifetimes;
		st->lifetime_capacity = cap;
	}
	st->lifetimes[st->lifetime_count++] = l;
	return 1;
}

/*
 * Takes obj as a stats record when it is one of ours (it names an outcome and
 * a container). Returns 1 when taken, 0 when it is not a record.
 */
static int try_record(struct stats *st, const struct cb_stats_json_value *obj, const char *stream,
		      size_t stream_len, int64_t event_ts_ms)
{
	struct cb_stats_json_value v;
	struct record r;
	char text[STREAM_NAME_MAX + 1];
	size_t len;
	int outcome;
	int64_t n;
	int rc;

	memset(&r, 0, sizeof(r));
	r.stream = NONE;
	r.error_kind = NONE;
	if (cb_stats_json_member(obj, "outcome", &v) != 0)
		return 0;
	outcome = outcome_from_name(&v);
	if (outcome < 0)
		return try_lifetime(st, obj, event_ts_ms);
	r.outcome = (unsigned char)outcome;
	rc = record_container(st, obj, &r.container);
	if (rc <= 0)
		return rc < 0;
	if (member_i64(obj, "start", &n) == 0 && n >= 1) {
		r.start = (uint64_t)n;
		r.has_start = 1;
	}
	r.ts_ms = record_time(obj, event_ts_ms);
	if (member_i64(obj, "total_ms", &n) == 0 && n >= 0)
		r.total_ms = n;
	if (member_i64(obj, "fetch_ms", &n) == 0 && n >= 0)
		r.fetch_ms = n;
	if (member_i64(obj, "bytes", &n) == 0 && n >= 0)
		r.bytes = (uint64_t)n;

	if (r.outcome == CB_OUTCOME_ERROR) {
		char kind[ERROR_KIND_MAX + 1];

		if (cb_stats_json_member(obj, "error", &v) != 0 ||
		    cb_stats_json_string(&v, kind, sizeof(kind), &len) != 0 ||
		    !is_printable_ascii(kind, len)) {
			strcpy(kind, "unknown");
			len = strlen(kind);
		}
		rc = strtab_intern(&st->kinds, kind, len, &r.error_kind, NULL);
		if (rc == -1) {
			stats_fail_intern(st, rc, "");
			return 1;
		}
		if (rc == -2) {
			/* Past ERROR_KINDS_MAX distinct kinds: counted, but not by name. */
			r.error_kind = NONE;
			st->unnamed_kinds++;
		}
	}

	if (cb_stats_json_member(obj, "log_stream", &v) == 0 &&
	    cb_stats_json_string(&v, text, sizeof(text), &len) == 0)
		r.stream = intern_stream(st, text, len);
	else
		r.stream = intern_stream(st, stream, stream_len);
	if (st->failed == CB_OK)
		append_record(st, &r);
	return 1;
}

static void add_report(struct stats *st, const char *request_id, size_t id_len, int has_init,
		       const char *stream, size_t stream_len)
{
	uint32_t index = NONE;
	int is_new = 0;
	int rc;

	if (id_len > 0) {
		rc = strtab_intern(&st->request_ids, request_id, id_len, &index, &is_new);
		if (rc != 0) {
			stats_fail_intern(st, rc, "too many REPORT lines; split the input by time");
			return;
		}
		if (!is_new) {
			/* Seen before, maybe where its log stream was unknown (a bare log file). */
			uint32_t *first = &st->report_streams[st->id_report[index]];

			if (*first == NONE)
				*first = intern_stream(st, stream, stream_len);
			st->duplicate_reports++;
			return;
		}
		if (index >= st->id_report_capacity) {
			size_t cap = st->id_report_capacity != 0 ? 2 * st->id_report_capacity : 1024;
			uint32_t *map = realloc(st->id_report, cap * sizeof(*map));

			if (map == NULL) {
				stats_fail(st, CB_E_NOMEM, "out of memory");
				return;
			}
			st->id_report = map;
			st->id_report_capacity = cap;
		}
		st->id_report[index] = (uint32_t)st->reports;
	}
	if (st->reports == st->max_records) {
		stats_fail(st, CB_E_CONFIG, "too many REPORT lines; split the input by time");
		return;
	}
	if (st->reports == st->reports_capacity) {
		size_t cap = st->reports_capacity != 0 ? 2 * st->reports_capacity : 1024;
		uint32_t *streams = realloc(st->report_streams, cap * sizeof(*streams));

		if (streams == NULL) {
			stats_fail(st, CB_E_NOMEM, "out of memory");
			return;
		}
		st->report_streams = streams;
		st->reports_capacity = cap;
	}
	st->report_streams[st->reports++] = intern_stream(st, stream, stream_len);
	if (has_init)
		st->init_reports++;
}

/* ---- log formats ---- */

static void handle_text(struct stats *st, const char *text, size_t len, const char *stream,
			size_t stream_len, int64_t event_ts_ms, int depth);

/*
 * Lambda's JSON log format (LogFormat=JSON) reports as
 * {"type":"platform.report","record":{"requestId":...,"metrics":{"initDurationMs":...}}}.
 */
static int try_platform_report(struct stats *st, const struct cb_stats_json_value *obj,
			       const char *stream, size_t stream_len)
{
	struct cb_stats_json_value v;
	struct cb_stats_json_value record;
	struct cb_stats_json_value metrics;
	char id[REQUEST_ID_MAX + 1];
	size_t id_len = 0;
	int has_init = 0;

	if (cb_stats_json_member(obj, "type", &v) != 0 ||
	    !cb_stats_json_string_is(&v, "platform.report") ||
	    cb_stats_json_member(obj, "record", &record) != 0)
		return 0;
	if (cb_stats_json_member(&record, "requestId", &v) != 0 ||
	    cb_stats_json_string(&v, id, sizeof(id), &id_len) != 0)
		id_len = 0;
	if (cb_stats_json_member(&record, "metrics", &metrics) == 0 &&
	    cb_stats_json_member(&metrics, "initDurationMs", &v) == 0)
		has_init = 1;
	add_report(st, id, id_len, has_init, stream, stream_len);
	return 1;
}

/*
 * A log event: an object with a "message" string (an export's event, one of
 * `jq -c '.events[]'`, or a log line wrapped by a logging library). Its
 * logStreamName and timestamp apply to the lines in its message.
 */
static void handle_event(struct stats *st, const struct cb_stats_json_value *event,
			 const char *stream, size_t stream_len, int64_t event_ts_ms, int depth)
{
	struct cb_stats_json_value v;
	char own_stream[STREAM_NAME_MAX + 1];
	size_t len;
	int64_t ts;

	if (cb_stats_json_member(event, "logStreamName", &v) == 0 &&
	    cb_stats_json_string(&v, own_stream, sizeof(own_stream), &len) == 0) {
		stream = own_stream;
		stream_len = len;
	}
	if (member_i64(event, "timestamp", &ts) == 0)
		event_ts_ms = ts;
	if (cb_stats_json_member(event, "message", &v) != 0 || v.type != CB_STATS_JSON_STRING) {
		st->ignored++;
		return;
	}
	if (cb_stats_json_string(&v, st->scratch[depth], LINE_MAX_BYTES + 1, &len) != 0) {
		st->too_long++;
		return;
	}
	handle_text(st, st->scratch[depth], len, stream, stream_len, event_ts_ms, depth + 1);
}

static void handle_value(struct stats *st, const struct cb_stats_json_value *value,
			 const char *stream, size_t stream_len, int64_t event_ts_ms, int depth)
{
	struct cb_stats_json_value v;
	struct cb_stats_json_iter it;

	if (depth == 0 && value->type == CB_STATS_JSON_ARRAY) {
		/* `--query events` gives a bare array of events; `jq -s` one of records. */
		cb_stats_json_iter_init(&it, value);
		while (st->failed == CB_OK && cb_stats_json_next(&it, NULL, &v)) {
			if (v.type == CB_STATS_JSON_OBJECT)
				handle_value(st, &v, stream, stream_len, event_ts_ms, depth);
			else
				st->ignored++;
		}
		return;
	}
	if (value->type != CB_STATS_JSON_OBJECT) {
		st->ignored++;
		return;
	}
	if (depth == 0 && cb_stats_json_member(value, "events", &v) == 0 &&
	    v.type == CB_STATS_JSON_ARRAY) {
		struct cb_stats_json_value event;

		cb_stats_json_iter_init(&it, &v);
		while (st->failed == CB_OK && cb_stats_json_next(&it, NULL, &event)) {
			if (event.type == CB_STATS_JSON_OBJECT)
				handle_event(st, &event, stream, stream_len, event_ts_ms, depth);
			else
				st->ignored++;
		}
		return;
	}
	if (try_record(st, value, stream, stream_len, event_ts_ms))
		return;
	if (try_platform_report(st, value, stream, stream_len))
		return;
	if (depth < MESSAGE_DEPTH_MAX && cb_stats_json_member(value, "message", &v) == 0 &&
	    v.type == CB_STATS_JSON_STRING) {
		handle_event(st, value, stream, stream_len, event_ts_ms, depth);
		return;
	}
	st->ignored++;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Finds a log stream name in a line's prefix: the fourth field of
 * `filter-log-events --output text` ("EVENTS<TAB>id<TAB>ingestion<TAB>stream..."),
 * or a token shaped like Lambda's "2026/11/22/[$LATEST]0123abcd" (`aws logs tail`).
 */
static void stream_from_prefix(const char *prefix, size_t len, const char **stream,
			       size_t *stream_len)
{
	size_t i = 0;
	int field = 0;
	int events = len >= 7 && memcmp(prefix, "EVENTS\t", 7) == 0;

	while (i < len) {
		size_t start;
		const char *open;

		while (i < len && is_blank(prefix[i]))
			i++;
		start = i;
		while (i < len && !is_blank(prefix[i]))
			i++;
		if (i == start)
			break;
		open = memchr(prefix + start, '[', i - start);
		if ((events && field == 3) ||
		    (!events && open != NULL && memchr(open, ']', (size_t)(prefix + i - open)) &&
		     memchr(prefix + start, '/', i - start))) {
			*stream = prefix + start;
			*stream_len = i - start;
			return;
		}
		field++;
	}
}

/* A Lambda REPORT line: "REPORT RequestId: <id><TAB>Duration: ...[<TAB>Init Duration: ...]". */
static int try_report_line(struct stats *st, const char *line, size_t len, const char *stream,
			   size_t stream_len)
{
	static const char tag[] = "REPORT RequestId:";
	const char *p = memmem(line, len, tag, sizeof(tag) - 1);
	const char *end = line + len;
	const char *id;

	if (p == NULL || line[0] == '{' || (p != line && !is_blank(p[-1])))
		return 0;
	if (stream == NULL)
		stream_from_prefix(line, (size_t)(p - line), &stream, &stream_len);
	p += sizeof(tag) - 1;
	while (p < end && is_blank(*p))
		p++;
	id = p;
	while (p < end && !is_blank(*p))
		p++;
	add_report(st, id, (size_t)(p - id) <= REQUEST_ID_MAX ? (size_t)(p - id) : 0,
		   memmem(p, (size_t)(end - p), "Init Duration:", 14) != NULL, stream, stream_len);
	return 1;
}

static void handle_line(struct stats *st, const char *line, size_t len, const char *stream,
			size_t stream_len, int64_t event_ts_ms, int depth)
{
	struct cb_stats_json_value value;
	const char *brace;
	const char *rest;
	const char *end;
	size_t consumed;

	while (len > 0 && is_blank(line[len - 1]))
		len--;
	while (len > 0 && is_blank(line[0])) {
		line++;
		len--;
	}
	if (len == 0)
		return;
	if (try_report_line(st, line, len, stream, stream_len))
		return;
	brace = memchr(line, '{', len);
	if (brace == NULL) {
		st->ignored++; /* START, END, handler output, ... */
		return;
	}
	end = line + len;
	if (cb_stats_json_parse(brace, (size_t)(end - brace), &value, &consumed) != 0) {
		st->ignored++;
		return;
	}
	rest = brace + consumed;
	while (rest < end && is_blank(*rest))
		rest++;
	if (rest < end && len >= 7 && memcmp(line, "EVENTS\t", 7) == 0) {
		/* --output text puts the event's timestamp after the message. */
		int64_t ts = 0;
		const char *digits = rest;

		while (rest < end && *rest >= '0' && *rest <= '9')
			rest++;
		if (rest > digits && read_digits(digits, (size_t)(rest - digits), &ts) == 0 &&
		    event_ts_ms < 0)
			event_ts_ms = ts;
		while (rest < end && is_blank(*rest))
			rest++;
	}
	if (rest != end) {
		st->ignored++; /* a JSON object followed by more text is not one of our lines */
		return;
	}
	if (stream == NULL)
		stream_from_prefix(line, (size_t)(brace - line), &stream, &stream_len);
	handle_value(st, &value, stream, stream_len, event_ts_ms, depth);
}

static void handle_text(struct stats *st, const char *text, size_t len, const char *stream,
			size_t stream_len, int64_t event_ts_ms, int depth)
{
	const char *p = text;
	const char *end = text + len;

	while (p < end && st->failed == CB_OK) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line_len = (size_t)((nl != NULL ? nl : end) - p);

		if (line_len > LINE_MAX_BYTES)
			st->too_long++;
		else
			handle_line(st, p, line_len, stream, stream_len, event_ts_ms, depth);
		p = nl != NULL ? nl + 1 : end;
	}
}

/* ---- reading inputs ---- */

struct input {
	const char *name;
	int fd;
	char *buf;
	size_t len;
	size_t cap;
	int eof;
};

/* Reads more into in->buf, growing it up to limit bytes. Returns 0, or -1 with st failed. */
static int input_read(struct stats *st, struct input *in, size_t limit)
{
	ssize_t n;

	if (in->len == in->cap) {
		size_t cap = in->cap != 0 ? 2 * in->cap : 2 * LINE_MAX_BYTES + READ_CHUNK_BYTES;
		char *buf;

		if (cap > limit)
			cap = limit;
		if (cap <= in->len) {
			char what[256];

			snprintf(what, sizeof(what),
				 "%s is a JSON document larger than %zu MiB; convert it to lines "
				 "first (jq -c '.events[]')",
				 in->name, DOCUMENT_MAX_BYTES >> 20);
			stats_fail(st, CB_E_CONFIG, what);
			return -1;
		}
		buf = realloc(in->buf, cap);
		if (buf == NULL) {
			stats_fail(st, CB_E_NOMEM, "out of memory");
			return -1;
		}
		in->buf = buf;
		in->cap = cap;
	}
	do {
		n = read(in->fd, in->buf + in->len, in->cap - in->len);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		char what[256];

		snprintf(what, sizeof(what), "cannot read %s: %s", in->name, strerror(errno));
		stats_fail(st, CB_E_IO, what);
		return -1;
	}
	if (n == 0)
		in->eof = 1;
	in->len += (size_t)n;
	return 0;
}

/*
 * Line by line, streaming: memory stays bounded by the line cap however
 * long the input is. A line longer than LINE_MAX_BYTES is skipped whole.
 */
static void read_lines(struct stats *st, struct input *in)
{
	size_t start = 0;
	int skipping = 0;

	for (;;) {
		const char *nl;

		while (st->failed == CB_OK &&
		       (nl = memchr(in->buf + start, '\n', in->len - start)) != NULL) {
			size_t line_len = (size_t)(nl - (in->buf + start));

			if (skipping)
				skipping = 0;
			else if (line_len > LINE_MAX_BYTES)
				st->too_long++;
			else
				handle_line(st, in->buf + start, line_len, NULL, 0, -1, 0);
			start = (size_t)(nl - in->buf) + 1;
		}
		if (st->failed != CB_OK)
			return;
		if (!skipping && in->len - start > LINE_MAX_BYTES) {
			st->too_long++;
			skipping = 1;
		}
		if (skipping)
			start = in->len;
		memmove(in->buf, in->buf + start, in->len - start);
		in->len -= start;
		start = 0;
		if (in->eof)
			break;
		if (input_read(st, in, in->cap) != 0)
			return;
	}
	if (!skipping && in->len > 0)
		handle_line(st, in->buf, in->len, NULL, 0, -1, 0);
}

/* A whole JSON document (or several in a row), then any lines after them. */
static void read_document(struct stats *st, struct input *in)
{
	size_t pos = 0;

	while (!in->eof) {
		if (input_read(st, in, DOCUMENT_MAX_BYTES) != 0)
			return;
	}
	while (pos < in->len && st->failed == CB_OK) {
		struct cb_stats_json_value value;
		size_t consumed;

		while (pos < in->len && is_blank(in->buf[pos]))
			pos++;
		if (pos == in->len)
			break;
		if (cb_stats_json_parse(in->buf + pos, in->len - pos, &value, &consumed) != 0 ||
		    (value.type != CB_STATS_JSON_OBJECT && value.type != CB_STATS_JSON_ARRAY)) {
			/* Not a document after all: take the rest as lines. */
			handle_text(st, in->buf + pos, in->len - pos, NULL, 0, -1, 0);
			break;
		}
		handle_value(st, &value, NULL, 0, -1, 0);
		pos += consumed;
	}
}

/*
 * Sniffs the start of an input: a first line that is not a whole JSON value
 * on its own but opens one ("{" or "[" alone, as `aws` prints) means a
 * document; anything else is read as lines.
 */
static void read_input(struct stats *st, struct input *in)
{
	size_t first = 0;
	const char *nl = NULL;

	for (;;) {
		while (first < in->len && is_blank(in->buf[first]))
			first++;
		if (first < in->len)
			nl = memchr(in->buf + first, '\n', in->len - first);
		if (nl != NULL || in->eof || in->len - first > LINE_MAX_BYTES)
			break;
		if (input_read(st, in, DOCUMENT_MAX_BYTES) != 0)
			return;
	}
	if (first < in->len && (in->buf[first] == '{' || in->buf[first] == '[')) {
		size_t line_len = (nl != NULL ? (size_t)(nl - in->buf) : in->len) - first;
		struct cb_stats_json_value value;
		size_t consumed = 0;
		int whole_line =
			line_len <= LINE_MAX_BYTES &&
			cb_stats_json_parse(in->buf + first, line_len, &value, &consumed) == 0;

		while (whole_line && consumed < line_len) {
			if (!is_blank(in->buf[first + consumed]))
				whole_line = 0;
			consumed++;
		}
		if (!whole_line) {
			read_document(st, in);
			return;
		}
	}
	read_lines(st, in);
}

static void read_path(struct stats *st, const char *path)
{
	struct input in;

	memset(&in, 0, sizeof(in));
	in.name = path;
	if (strcmp(path, "-") == 0) {
		in.name = "stdin";
		in.fd = STDIN_FILENO;
	} else {
		in.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (in.fd < 0) {
			char what[256];

			snprintf(what, sizeof(what), "cannot open %s: %s", path, strerror(errno));
			stats_fail(st, CB_E_IO, what);
			return;
		}
	}
	read_input(st, &in);
	if (in.fd != STDIN_FILENO)
		close(in.fd);
	free(in.buf);
}

/* ---- the report ---- */

struct dist {
	size_t count;
	double min;
	double median;
	double p90;
	double max;
};

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a;
	double y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentiles, so every value reported is one that was observed. */
static struct dist distribution(double *values, size_t n)
{
	struct dist d = {0, 0, 0, 0, 0};

	if (n == 0)
		return d;
	qsort(values, n, sizeof(*values), compare_double);
	d.count = n;
	d.min = values[0];
	d.median = values[(n + 1) / 2 - 1];
	d.p90 = values[(n * 9 + 9) / 10 - 1];
	d.max = values[n - 1];
	return d;
}

static int compare_records(const void *a, const void *b)
{
	const struct record *x = a;
	const struct record *y = b;

	if (x->container != y->container)
		return x->container < y->container ? -1 : 1;
	if (x->has_start != y->has_start)
		return x->has_start > y->has_start ? -1 : 1;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return (x->ts_ms > y->ts_ms) - (x->ts_ms < y->ts_ms);
}

/* Drops a second record of the same start in the same container. */
static void dedupe(struct stats *st)
{
	size_t kept = 0;

	if (st->count == 0)
		return; /* records is still NULL, which qsort must not get */
	qsort(st->records, st->count, sizeof(*st->records), compare_records);
	for (size_t i = 0; i < st->count; i++) {
		const struct record *r = &st->records[i];

		if (kept > 0 && r->container != NONE && r->has_start) {
			const struct record *prev = &st->records[kept - 1];

			if (prev->container == r->container && prev->has_start &&
			    prev->start == r->start) {
				st->duplicates++;
				continue;
			}
		}
		st->records[kept++] = *r;
	}
	st->count = kept;
}

struct container_summary {
	uint32_t container;
	size_t first; /* index of its first record (records are grouped) */
	size_t count;
	int64_t first_ts_ms; /* -1 when none of its records has a time */
};

struct report {
	uint64_t starts;
	uint64_t outcomes[CB_OUTCOME_ERROR + 1];
	uint64_t downloads;
	uint64_t reuses;
	uint64_t bytes_downloaded;
	uint64_t without_container;
	size_t containers;
	struct dist life_starts;
	struct dist life_minutes;
	struct dist download_ms;
	struct dist fetch_ms;
	uint64_t *kind_counts; /* per error kind */
	int64_t first_ts_ms;
	int64_t last_ts_ms;
	size_t report_streams;
	struct dist per_stream;
	struct container_summary *summaries;
	/* From lifetime records, one per container. */
	uint64_t lifetime_invocations;
	uint64_t counted_invocations; /* of the containers that say how many downloads they made */
	uint64_t counted_downloads;
	struct dist invocations_per_container;
	struct dist alive_minutes;
	uint64_t *reason_counts;
	uint64_t unnamed_reasons;
	uint32_t *lifetime_of; /* container index -> lifetime index, or NONE */
};

static int compare_summary_time(const void *a, const void *b)
{
	const struct container_summary *x = a;
	const struct container_summary *y = b;

	if (x->first_ts_ms != y->first_ts_ms)
		return x->first_ts_ms < y->first_ts_ms ? -1 : 1;
	return (x->container > y->container) - (x->container < y->container);
}

static int compare_lifetimes(const void *a, const void *b)
{
	const struct lifetime *x = a;
	const struct lifetime *y = b;

	if (x->container != y->container)
		return x->container < y->container ? -1 : 1;
	return (x->ts_ms > y->ts_ms) - (x->ts_ms < y->ts_ms);
}

/* A container shuts down once: a second lifetime record for it is the same one again. */
static void dedupe_lifetimes(struct stats *st)
{
	size_t kept = 0;

	if (st->lifetime_count == 0)
		return;
	qsort(st->lifetimes, st->lifetime_count, sizeof(*st->lifetimes), compare_lifetimes);
	for (size_t i = 0; i < st->lifetime_count; i++) {
		const struct lifetime *l = &st->lifetimes[i];

		if (kept > 0 && l->container != NONE &&
		    st->lifetimes[kept - 1].container == l->container) {
			st->duplicate_lifetimes++;
			continue;
		}
		st->lifetimes[kept++] = *l;
	}
	st->lifetime_count = kept;
}

static int build_lifetimes(struct stats *st, struct report *rep)
{
	double *invocations = calloc(st->lifetime_count + 1, sizeof(double));
	double *alive = calloc(st->lifetime_count + 1, sizeof(double));
	size_t n_alive = 0;
	int rc = -1;

	dedupe_lifetimes(st);
	rep->reason_counts = calloc(st->reasons.count + 1, sizeof(uint64_t));
	rep->lifetime_of = malloc((st->containers.count + 1) * sizeof(uint32_t));
	if (invocations == NULL || alive == NULL || rep->reason_counts == NULL ||
	    rep->lifetime_of == NULL)
		goto out;
	for (size_t c = 0; c <= st->containers.count; c++)
		rep->lifetime_of[c] = NONE;
	for (size_t i = 0; i < st->lifetime_count; i++) {
		const struct lifetime *l = &st->lifetimes[i];

		rep->lifetime_invocations += l->invocations;
		invocations[i] = (double)l->invocations;
		if (l->alive_ms >= 0)
			alive[n_alive++] = (double)l->alive_ms / 60000.0;
		if (l->reason != NONE)
			rep->reason_counts[l->reason]++;
		else
			rep->unnamed_reasons++;
		if (l->has_downloads) {
			rep->counted_invocations += l->invocations;
			rep->counted_downloads += l->downloads;
		}
		if (l->container != NONE)
			rep->lifetime_of[l->container] = (uint32_t)i;
	}
	rep->invocations_per_container = distribution(invocations, st->lifetime_count);
	rep->alive_minutes = distribution(alive, n_alive);
	rc = 0;
out:
	free(invocations);
	free(alive);
	return rc;
}

static int build_report(struct stats *st, struct report *rep)
{
	double *starts_values = NULL;
	double *minutes_values = NULL;
	double *download_values = NULL;
	double *fetch_values = NULL;
	uint64_t *per_stream = NULL;
	double *stream_values = NULL;
	size_t n_minutes = 0;
	size_t n_downloads = 0;
	int rc = -1;

	memset(rep, 0, sizeof(*rep));
	dedupe(st);
	rep->first_ts_ms = -1;
	rep->last_ts_ms = -1;
	/* One extra slot so no allocation asks for zero bytes. */
	starts_values = calloc(st->count + 1, sizeof(double));
	minutes_values = calloc(st->count + 1, sizeof(double));
	download_values = calloc(st->count + 1, sizeof(double));
	fetch_values = calloc(st->count + 1, sizeof(double));
	rep->summaries = calloc(st->count + 1, sizeof(*rep->summaries));
	rep->kind_counts = calloc(st->kinds.count + 1, sizeof(uint64_t));
	per_stream = calloc(st->streams.count + 1, sizeof(uint64_t));
	stream_values = calloc(st->streams.count + 1, sizeof(double));
	if (starts_values == NULL || minutes_values == NULL || download_values == NULL ||
	    fetch_values == NULL || rep->summaries == NULL || rep->kind_counts == NULL ||
	    per_stream == NULL || stream_values == NULL)
		goto out;

	for (size_t i = 0; i < st->count;) {
		const struct record *group = &st->records[i];
		size_t j = i;
		uint64_t lo_start = UINT64_MAX;
		uint64_t hi_start = 0;
		int64_t lo_ts = INT64_MAX;
		int64_t hi_ts = INT64_MIN;

		for (; j < st->count && st->records[j].container == group->container; j++) {
			const struct record *r = &st->records[j];

			rep->starts++;
			rep->outcomes[r->outcome]++;
			if (r->outcome == CB_OUTCOME_DOWNLOAD || r->outcome == CB_OUTCOME_REPAIR) {
				rep->bytes_downloaded += r->bytes;
				download_values[n_downloads] = (double)r->total_ms;
				fetch_values[n_downloads] = (double)r->fetch_ms;
				n_downloads++;
			}
			if (r->outcome == CB_OUTCOME_ERROR && r->error_kind != NONE)
				rep->kind_counts[r->error_kind]++;
			if (r->has_start) {
				lo_start = r->start < lo_start ? r->start : lo_start;
				hi_start = r->start > hi_start ? r->start : hi_start;
			}
			if (r->ts_ms >= 0) {
				lo_ts = r->ts_ms < lo_ts ? r->ts_ms : lo_ts;
				hi_ts = r->ts_ms > hi_ts ? r->ts_ms : hi_ts;
			}
			if (group->container == NONE)
				rep->without_container++;
		}
		if (lo_ts <= hi_ts) {
			if (rep->first_ts_ms < 0 || lo_ts < rep->first_ts_ms)
				rep->first_ts_ms = lo_ts;
			if (hi_ts > rep->last_ts_ms)
				rep->last_ts_ms = hi_ts;
		}
		if (group->container != NONE) {
			struct container_summary *s = &rep->summaries[rep->containers];

			s->container = group->container;
			s->first = i;
			s->count = j - i;
			s->first_ts_ms = lo_ts <= hi_ts ? lo_ts : -1;
			/* The span of start counters seen, so a lost record does not shorten it. */
			starts_values[rep->containers] = lo_start <= hi_start ?
								 (double)(hi_start - lo_start + 1) :
								 (double)(j - i);
			if (lo_ts <= hi_ts)
				minutes_values[n_minutes++] = (double)(hi_ts - lo_ts) / 60000.0;
			rep->containers++;
		}
		i = j;
	}
	rep->downloads = rep->outcomes[CB_OUTCOME_DOWNLOAD] + rep->outcomes[CB_OUTCOME_REPAIR];
	rep->reuses = rep->outcomes[CB_OUTCOME_REUSE] + rep->outcomes[CB_OUTCOME_WAITED];
	rep->life_starts = distribution(starts_values, rep->containers);
	rep->life_minutes = distribution(minutes_values, n_minutes);
	rep->download_ms = distribution(download_values, n_downloads);
	rep->fetch_ms = distribution(fetch_values, n_downloads);

	/* Invocations per log stream, from the REPORT lines. */
	for (size_t i = 0; i < st->reports; i++) {
		if (st->report_streams[i] != NONE)
			per_stream[st->report_streams[i]]++;
	}
	for (size_t i = 0; i < st->streams.count; i++) {
		if (per_stream[i] > 0)
			stream_values[rep->report_streams++] = (double)per_stream[i];
	}
	rep->per_stream = distribution(stream_values, rep->report_streams);
	rc = build_lifetimes(st, rep);
out:
	free(starts_values);
	free(minutes_values);
	free(download_values);
	free(fetch_values);
	free(per_stream);
	free(stream_values);
	return rc;
}

static void report_free(struct report *rep)
{
	free(rep->kind_counts);
	free(rep->summaries);
	free(rep->reason_counts);
	free(rep->lifetime_of);
}

static void put_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(out, "\\u%04x", (unsigned)*s);
		else
			fputc(*s, out);
	}
	fputc('"', out);
}

static void put_json_dist(FILE *out, const struct dist *d, int decimals)
{
	if (d->count == 0) {
		fputs("null", out);
		return;
	}
	fprintf(out, "{\"count\":%zu,\"min\":", d->count);
	fprintf(out, "%.*f", decimals, d->min);
	fputs(",\"median\":", out);
	fprintf(out, "%.*f", decimals, d->median);
	fputs(",\"p90\":", out);
	fprintf(out, "%.*f", decimals, d->p90);
	fputs(",\"max\":", out);
	fprintf(out, "%.*f", decimals, d->max);
	fputc('}', out);
}

static void put_json_time(FILE *out, int64_t ts_ms)
{
	char text[40];

	if (ts_ms < 0) {
		fputs("null", out);
		return;
	}
	cb_clock_format_rfc3339(ts_ms, text, sizeof(text));
	put_json_string(out, text);
}

static void put_rate(FILE *out, uint64_t part, uint64_t whole)
{
	if (whole == 0)
		fputs("null", out);
	else
		fprintf(out, "%.6f", (double)part / (double)whole);
}

static void print_json(FILE *out, const struct stats *st, const struct report *rep)
{
	int first = 1;

	fprintf(out,
		"{\"starts\":%llu,\"containers\":%zu,\"downloads\":%llu,\"reuses\":%llu,"
		"\"reuse_rate\":",
		(unsigned long long)rep->starts, rep->containers,
		(unsigned long long)rep->downloads, (unsigned long long)rep->reuses);
	put_rate(out, rep->reuses, rep->starts);
	fputs(",\"redownload_rate\":", out);
	put_rate(out, rep->downloads, rep->starts);
	fprintf(out, ",\"errors\":%llu,\"outcomes\":{",
		(unsigned long long)rep->outcomes[CB_OUTCOME_ERROR]);
	for (int o = CB_OUTCOME_REUSE; o <= CB_OUTCOME_ERROR; o++)
		fprintf(out, "%s\"%s\":%llu", o == CB_OUTCOME_REUSE ? "" : ",",
			cb_outcome_name((enum cb_outcome)o), (unsigned long long)rep->outcomes[o]);
	fputs("},\"errors_by_kind\":{", out);
	for (size_t k = 0; k < st->kinds.count; k++) {
		if (rep->kind_counts[k] == 0)
			continue;
		if (!first)
			fputc(',', out);
		first = 0;
		put_json_string(out, strtab_get(&st->kinds, (uint32_t)k));
		fprintf(out, ":%llu", (unsigned long long)rep->kind_counts[k]);
	}
	if (st->unnamed_kinds > 0)
		fprintf(out, "%s\"other\":%llu", first ? "" : ",",
			(unsigned long long)st->unnamed_kinds);
	fputs("},\"container_lifetime\":{\"starts\":", out);
	put_json_dist(out, &rep->life_starts, 0);
	fputs(",\"minutes\":", out);
	put_json_dist(out, &rep->life_minutes, 2);
	fputs("},\"download_ms\":", out);
	put_json_dist(out, &rep->download_ms, 0);
	fputs(",\"fetch_ms\":", out);
	put_json_dist(out, &rep->fetch_ms, 0);
	fprintf(out, ",\"bytes_downloaded\":%llu,\"starts_without_container\":%llu,\"period\":",
		(unsigned long long)rep->bytes_downloaded,
		(unsigned long long)rep->without_container);
	if (rep->first_ts_ms < 0) {
		fputs("null", out);
	} else {
		fputs("{\"first\":", out);
		put_json_time(out, rep->first_ts_ms);
		fputs(",\"last\":", out);
		put_json_time(out, rep->last_ts_ms);
		fputc('}', out);
	}
	fputs(",\"invocations\":", out);
	if (st->reports == 0) {
		fputs("null", out);
	} else {
		fprintf(out, "{\"reports\":%zu,\"log_streams\":%zu,\"init_reports\":%llu,",
			st->reports, rep->report_streams, (unsigned long long)st->init_reports);
		fputs("\"per_log_stream\":", out);
		put_json_dist(out, &rep->per_stream, 0);
		fputc('}', out);
	}
	fputs(",\"shutdowns\":", out);
	if (st->lifetime_count == 0) {
		fputs("null", out);
	} else {
		fprintf(out,
			"{\"containers\":%zu,\"invocations\":%llu,\"invocations_per_container\":",
			st->lifetime_count, (unsigned long long)rep->lifetime_invocations);
		put_json_dist(out, &rep->invocations_per_container, 0);
		fputs(",\"alive_minutes\":", out);
		put_json_dist(out, &rep->alive_minutes, 2);
		fputs(",\"invocations_per_download\":", out);
		if (rep->counted_downloads == 0)
			fputs("null", out);
		else
			fprintf(out, "%.6f",
				(double)rep->counted_invocations / (double)rep->counted_downloads);
		fputs(",\"reasons\":{", out);
		first = 1;
		for (size_t k = 0; k < st->reasons.count; k++) {
			if (rep->reason_counts[k] == 0)
				continue;
			if (!first)
				fputc(',', out);
			first = 0;
			put_json_string(out, strtab_get(&st->reasons, (uint32_t)k));
			fprintf(out, ":%llu", (unsigned long long)rep->reason_counts[k]);
		}
		if (rep->unnamed_reasons > 0)
			fprintf(out, "%s\"other\":%llu", first ? "" : ",",
				(unsigned long long)rep->unnamed_reasons);
		fputs("}}", out);
	}
	fprintf(out,
		",\"input\":{\"records\":%zu,\"duplicates\":%llu,\"duplicate_reports\":%llu,"
		"\"lifetime_records\":%zu,\"duplicate_lifetimes\":%llu,"
		"\"ignored\":%llu,\"too_long\":%llu}}\n",
		st->count, (unsigned long long)st->duplicates,
		(unsigned long long)st->duplicate_reports, st->lifetime_count,
		(unsigned long long)st->duplicate_lifetimes, (unsigned long long)st->ignored,
		(unsigned long long)st->too_long);
}

static void print_dist_text(FILE *out, const struct dist *d, int decimals)
{
	fputs("min ", out);
	fprintf(out, "%.*f", decimals, d->min);
	fputs(", median ", out);
	fprintf(out, "%.*f", decimals, d->median);
	fputs(", p90 ", out);
	fprintf(out, "%.*f", decimals, d->p90);
	fputs(", max ", out);
	fprintf(out, "%.*f", decimals, d->max);
}

static void print_percent(FILE *out, uint64_t part, uint64_t whole)
{
	if (whole == 0)
		fputs("-", out);
	else
		fprintf(out, "%.1f %%", 100.0 * (double)part / (double)whole);
}

/* "9635 (9.4 KiB)": exact for scripts, readable for people. */
static void print_bytes(FILE *out, uint64_t bytes)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double value = (double)bytes;
	size_t unit = 0;

	fprintf(out, "%llu", (unsigned long long)bytes);
	if (bytes < 1024)
		return;
	value /= 1024.0;
	while (value >= 1024.0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024.0;
		unit++;
	}
	fprintf(out, " (%.1f %s)", value, units[unit]);
}

static void print_text(FILE *out, const struct stats *st, const struct report *rep)
{
	char first[40];
	char last[40];
	int any = 0;

	fprintf(out, "starts              %llu\n", (unsigned long long)rep->starts);
	fprintf(out, "containers          %zu\n", rep->containers);
	fprintf(out, "downloads           %llu (download %llu, repair %llu)\n",
		(unsigned long long)rep->downloads,
		(unsigned long long)rep->outcomes[CB_OUTCOME_DOWNLOAD],
		(unsigned long long)rep->outcomes[CB_OUTCOME_REPAIR]);
	fprintf(out, "reuses              %llu (reuse %llu, waited %llu)\n",
		(unsigned long long)rep->reuses, (unsigned long long)rep->outcomes[CB_OUTCOME_REUSE],
		(unsigned long long)rep->outcomes[CB_OUTCOME_WAITED]);
	fprintf(out, "errors              %llu\n",
		(unsigned long long)rep->outcomes[CB_OUTCOME_ERROR]);
	fputs("reuse rate          ", out);
	print_percent(out, rep->reuses, rep->starts);
	fputs("  (reuses / starts)\n", out);
	fputs("re-download rate    ", out);
	print_percent(out, rep->downloads, rep->starts);
	fputs("  (downloads / starts)\n", out);
	if (rep->life_starts.count > 0) {
		fputs("container lifetime  in starts:  ", out);
		print_dist_text(out, &rep->life_starts, 0);
		fputc('\n', out);
	}
	if (rep->life_minutes.count > 0) {
		fputs("                    in minutes: ", out);
		print_dist_text(out, &rep->life_minutes, 1);
		fputc('\n', out);
	}
	if (rep->download_ms.count > 0)
		fprintf(out,
			"download time       median %.0f ms, p90 %.0f ms, max %.0f ms "
			"(fetch median %.0f ms, p90 %.0f ms)\n",
			rep->download_ms.median, rep->download_ms.p90, rep->download_ms.max,
			rep->fetch_ms.median, rep->fetch_ms.p90);
	fputs("bytes downloaded    ", out);
	print_bytes(out, rep->bytes_downloaded);
	fputc('\n', out);
	if (rep->outcomes[CB_OUTCOME_ERROR] > 0) {
		fputs("errors by kind      ", out);
		for (size_t k = 0; k < st->kinds.count; k++) {
			if (rep->kind_counts[k] == 0)
				continue;
			fprintf(out, "%s%s %llu", any ? ", " : "",
				strtab_get(&st->kinds, (uint32_t)k),
				(unsigned long long)rep->kind_counts[k]);
			any = 1;
		}
		if (st->unnamed_kinds > 0)
			fprintf(out, "%sother %llu", any ? ", " : "",
				(unsigned long long)st->unnamed_kinds);
		fputc('\n', out);
	}
	if (st->reports > 0) {
		fprintf(out,
			"invocations         %zu REPORT line%s in %zu log stream%s, %llu with an "
			"Init Duration\n",
			st->reports, st->reports == 1 ? "" : "s", rep->report_streams,
			rep->report_streams == 1 ? "" : "s", (unsigned long long)st->init_reports);
		if (rep->per_stream.count > 0) {
			fputs("  per log stream    ", out);
			print_dist_text(out, &rep->per_stream, 0);
			fputc('\n', out);
		}
	}
	if (st->lifetime_count > 0) {
		fprintf(out, "shutdowns           %zu container%s (", st->lifetime_count,
			st->lifetime_count == 1 ? "" : "s");
		any = 0;
		for (size_t k = 0; k < st->reasons.count; k++) {
			if (rep->reason_counts[k] == 0)
				continue;
			fprintf(out, "%s%s %llu", any ? ", " : "",
				strtab_get(&st->reasons, (uint32_t)k),
				(unsigned long long)rep->reason_counts[k]);
			any = 1;
		}
		if (rep->unnamed_reasons > 0)
			fprintf(out, "%sother %llu", any ? ", " : "",
				(unsigned long long)rep->unnamed_reasons);
		fputs(")\n", out);
		fprintf(out, "  invocations       %llu; per container ",
			(unsigned long long)rep->lifetime_invocations);
		print_dist_text(out, &rep->invocations_per_container, 0);
		fputc('\n', out);
		if (rep->alive_minutes.count > 0) {
			fputs("  alive minutes     ", out);
			print_dist_text(out, &rep->alive_minutes, 1);
			fputc('\n', out);
		}
		if (rep->counted_downloads > 0)
			fprintf(out, "  per download      %.1f invocations\n",
				(double)rep->counted_invocations / (double)rep->counted_downloads);
	}
	if (rep->first_ts_ms >= 0) {
		cb_clock_format_rfc3339(rep->first_ts_ms, first, sizeof(first));
		cb_clock_format_rfc3339(rep->last_ts_ms, last, sizeof(last));
		fprintf(out, "period              %s .. %s\n", first, last);
	}
	fprintf(out,
		"input               %zu records, %llu duplicates, %llu other lines, %llu too long\n",
		st->count + st->lifetime_count,
		(unsigned long long)(st->duplicates + st->duplicate_lifetimes),
		(unsigned long long)st->ignored, (unsigned long long)st->too_long);
}

static enum cb_status write_svg(const struct stats *st, const struct report *rep, const char *path,
				struct cb_error *err)
{
	struct container_summary *order = NULL;
	struct cb_stats_svg_row *rows = NULL;
	int64_t *ts = NULL;
	unsigned char *outcomes = NULL;
	char(*labels)[64] = NULL;
	struct cb_stats_svg_chart chart;
	char title[200];
	size_t marks = 0;
	size_t drawable = 0;
	enum cb_status status = CB_OK;

	order = calloc(rep->containers + 1, sizeof(*order));
	rows = calloc(SVG_ROWS_MAX, sizeof(*rows));
	labels = calloc(SVG_ROWS_MAX, sizeof(*labels));
	ts = calloc(SVG_MARKS_MAX, sizeof(*ts));
	outcomes = calloc(SVG_MARKS_MAX, sizeof(*outcomes));
	if (order == NULL || rows == NULL || labels == NULL || ts == NULL || outcomes == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, 0, "out of memory drawing the chart");
		goto out;
	}
	memcpy(order, rep->summaries, rep->containers * sizeof(*order));
	qsort(order, rep->containers, sizeof(*order), compare_summary_time);

	memset(&chart, 0, sizeof(chart));
	chart.rows = rows;
	chart.begin_ms = INT64_MAX;
	chart.end_ms = INT64_MIN;
	for (size_t c = 0; c < rep->containers; c++) {
		const struct container_summary *s = &order[c];
		struct cb_stats_svg_row *row = &rows[chart.row_count];
		uint32_t life = rep->lifetime_of[s->container];
		int64_t shutdown_ms = life != NONE ? st->lifetimes[life].ts_ms : -1;
		size_t with_time = shutdown_ms >= 0;

		if (s->first_ts_ms < 0)
			continue;
		drawable++;
		for (size_t i = 0; i < s->count; i++)
			with_time += st->records[s->first + i].ts_ms >= 0;
		if (chart.row_count == SVG_ROWS_MAX || marks + with_time > SVG_MARKS_MAX)
			continue;
		row->ts_ms = ts + marks;
		row->outcomes = outcomes + marks;
		for (size_t i = 0; i < s->count; i++) {
			const struct record *r = &st->records[s->first + i];

			if (r->ts_ms < 0)
				continue;
			ts[marks] = r->ts_ms;
			outcomes[marks] = r->outcome;
			marks++;
			chart.begin_ms = r->ts_ms < chart.begin_ms ? r->ts_ms : chart.begin_ms;
			chart.end_ms = r->ts_ms > chart.end_ms ? r->ts_ms : chart.end_ms;
		}
		if (shutdown_ms >= 0) {
			ts[marks] = shutdown_ms;
			outcomes[marks] = CB_STATS_SVG_SHUTDOWN;
			marks++;
			chart.begin_ms = shutdown_ms < chart.begin_ms ? shutdown_ms : chart.begin_ms;
			chart.end_ms = shutdown_ms > chart.end_ms ? shutdown_ms : chart.end_ms;
			chart.has_shutdowns = 1;
		}
		row->count = with_time;
		snprintf(labels[chart.row_count], sizeof(labels[0]), "%.12s  %zu start%s",
			 strtab_get(&st->containers, s->container), s->count,
			 s->count == 1 ? "" : "s");
		row->label = labels[chart.row_count];
		chart.row_count++;
	}
	chart.rows_omitted = drawable - chart.row_count;
	if (chart.row_count == 0) {
		chart.begin_ms = chart.end_ms = 0;
	}
	if (rep->starts > 0)
		snprintf(title, sizeof(title),
			 "coldboot: %llu starts, %zu containers, %llu downloads "
			 "(re-download rate %.1f %%)",
			 (unsigned long long)rep->starts, rep->containers,
			 (unsigned long long)rep->downloads,
			 100.0 * (double)rep->downloads / (double)rep->starts);
	else
		snprintf(title, sizeof(title), "coldboot: no stats records");
	chart.title = title;
	status = cb_stats_svg_write(path, &chart, err);
out:
	free(order);
	free(rows);
	free(labels);
	free(ts);
	free(outcomes);
	return status;
}

/* ---- command line ---- */

static void usage(FILE *out)
{
	fputs("usage: coldboot stats [--json] [--svg FILE] [--max-records N] [FILE...]\n"
	      "Aggregates coldboot stats records: JSON lines (--stats=FILE), CloudWatch EMF\n"
	      "lines, CloudWatch Logs exports (aws logs filter-log-events, aws logs tail) and\n"
	      "Lambda REPORT lines. Reads stdin when no FILE is given, or for \"-\".\n"
	      "  --json            one JSON object instead of the text report\n"
	      "  --svg FILE        also draw a timeline: one row per container, one mark per start\n"
	      "  --max-records N   refuse inputs with more than N records (default 1000000)\n",
	      out);
}

static int parse_count(const char *text, size_t *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > MAX_RECORDS_LIMIT)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
	int i;

	memset(opt, 0, sizeof(*opt));
	opt->max_records = DEFAULT_MAX_RECORDS;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (arg[0] != '-' || strcmp(arg, "-") == 0)
			break;
		if (strcmp(arg, "--json") == 0) {
			opt->json = 1;
		} else if (strcmp(arg, "--svg") == 0 || strncmp(arg, "--svg=", 6) == 0) {
			opt->svg_path = arg[5] == '=' ? arg + 6 : (i + 1 < argc ? argv[++i] : NULL);
			if (opt->svg_path == NULL || opt->svg_path[0] == '\0') {
				fputs("coldboot: stats: --svg needs a file name\n", stderr);
				return 2;
			}
		} else if (strcmp(arg, "--max-records") == 0 ||
			   strncmp(arg, "--max-records=", 14) == 0) {
			const char *value =
				arg[13] == '=' ? arg + 14 : (i + 1 < argc ? argv[++i] : NULL);

			if (value == NULL || parse_count(value, &opt->max_records) != 0) {
				fprintf(stderr,
					"coldboot: stats: --max-records needs a number from 1 to %d\n",
					MAX_RECORDS_LIMIT);
				return 2;
			}
		} else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "coldboot: stats: unknown option %s\n", arg);
			usage(stderr);
			return 2;
		}
	}
	opt->files = argv + i;
	opt->file_count = argc - i;
	return -1;
}

int cb_stats_cmd_main(int argc, char **argv)
{
	static char stdin_name[] = "-";
	static char *stdin_only[] = {stdin_name};
	struct options opt;
	struct stats st;
	struct report rep;
	struct cb_error err;
	int have_report = 0;
	int code;

	code = parse_options(argc, argv, &opt);
	if (code >= 0)
		return code;
	if (opt.file_count == 0) {
		opt.files = stdin_only;
		opt.file_count = 1;
	}
	memset(&rep, 0, sizeof(rep));
	if (stats_init(&st, opt.max_records) != 0) {
		stats_fail(&st, CB_E_NOMEM, "out of memory");
		goto out;
	}
	for (int f = 0; f < opt.file_count && st.failed == CB_OK; f++)
		read_path(&st, opt.files[f]);
	if (st.failed != CB_OK)
		goto out;
	if (build_report(&st, &rep) != 0) {
		stats_fail(&st, CB_E_NOMEM, "out of memory");
		goto out;
	}
	have_report = 1;
	if (opt.svg_path != NULL) {
		cb_error_init(&err);
		if (write_svg(&st, &rep, opt.svg_path, &err) != CB_OK) {
			stats_fail(&st, err.code, err.message);
			goto out;
		}
	}
	if (opt.json)
		print_json(stdout, &st, &rep);
	else
		print_text(stdout, &st, &rep);
	if (fflush(stdout) != 0)
		stats_fail(&st, CB_E_IO, "cannot write the report to stdout");
out:
	code = 0;
	if (st.failed != CB_OK) {
		fprintf(stderr, "coldboot: stats: %s\n", st.failure);
		code = cb_status_exit_code(st.failed);
	}
	if (have_report)
		report_free(&rep);
	stats_free(&st);
	return code;
}
