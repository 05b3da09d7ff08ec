/*
 * Stats records: one JSON object per start (DESIGN.md, "Stats record").
 *
 * With a file, the record is appended as one line with a single write() on an
 * O_APPEND descriptor, so concurrent starts never interleave their lines.
 * Without one, it goes to stdout as one CloudWatch Embedded Metric Format
 * line, written with a single write(1, ...) that bypasses stdio: stdout may be
 * a pipe shared with the handler exec'd right after, and a buffered FILE would
 * be lost at exec or flushed out of order. The line is kept below PIPE_BUF so
 * that write is atomic on a pipe too.
 */
#include "cache.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Lambda's own limits keep these short; the cap keeps the line under PIPE_BUF. */
#define ENV_VALUE_MAX 256
#define RECORD_MAX 4096

#if RECORD_MAX > PIPE_BUF
#error "a record must fit in one atomic pipe write"
#endif

const char *cb_outcome_name(enum cb_outcome outcome)
{
	switch (outcome) {
	case CB_OUTCOME_REUSE:
		return "reuse";
	case CB_OUTCOME_DOWNLOAD:
		return "download";
	case CB_OUTCOME_REPAIR:
		return "repair";
	case CB_OUTCOME_WAITED:
		return "waited";
	case CB_OUTCOME_ERROR:
		return "error";
	}
	return "error";
}

/* Length of the valid UTF-8 sequence at s (at most avail bytes), 0 when invalid. */
static size_t utf8_sequence_len(const unsigned char *s, size_t avail)
{
	size_t n;
	unsigned int min;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		min = 0x80;
		cp = s[0] & 0x1fu;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		min = 0x800;
		cp = s[0] & 0x0fu;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		min = 0x10000;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * Copies an environment value into out as valid UTF-8 of at most
 * ENV_VALUE_MAX bytes: invalid bytes become '?', and a cut never splits a
 * character. Returns NULL when the variable is unset or empty.
 */
static const char *env_value(const char *name, char *out, size_t out_size)
{
	const char *value = getenv(name);
	size_t len;
	size_t n = 0;

	if (value == NULL || value[0] == '\0')
		return NULL;
	len = strlen(value);
	for (size_t i = 0; i < len;) {
		size_t seq = utf8_sequence_len((const unsigned char *)value + i, len - i);

		if (seq == 0) {
			if (n + 1 >= out_size)
				break;
			out[n++] = '?';
			i++;
			continue;
		}
		if (n + seq >= out_size)
			break;
		memcpy(out + n, value + i, seq);
		n += seq;
		i += seq;
	}
	out[n] = '\0';
	return out;
}

/* Reads AWS_LAMBDA_FUNCTION_MEMORY_SIZE; returns -1 when unset or not a number. */
static long long env_memory_mb(void)
{
	const char *value = getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
	char *end;
	long long mb;

	if (value == NULL || value[0] < '0' || value[0] > '9')
		return -1;
	errno = 0;
	mb = strtoll(value, &end, 10);
	if (errno != 0 || *end != '\0' || mb < 0)
		return -1;
	return mb;
}

/* The plain properties, shared by both formats; buf is inside an open object. */
static void append_properties(struct cb_buf *buf, const struct cb_start_record *record)
{
	char ts[40];
	char value[ENV_VALUE_MAX + 1];
	const char *s;
	long long memory_mb;

	cb_clock_format_rfc3339(record->ts_ms, ts, sizeof(ts));
	cb_buf_printf(buf, "\"ts\":");
	cb_buf_json_string(buf, ts);
	cb_buf_printf(buf, ",\"container\":");
	if (record->container != NULL) {
		cb_buf_json_string(buf, record->container->id);
		cb_buf_printf(buf, ",\"start\":%llu", (unsigned long long)record->container->starts);
	} else {
		cb_buf_printf(buf, "null,\"start\":null");
	}
	cb_buf_printf(buf, ",\"outcome\":");
	cb_buf_json_string(buf, cb_outcome_name(record->outcome));
	cb_buf_printf(buf, ",\"digest\":");
	if (record->digest != NULL)
		cb_buf_json_string(buf, record->digest);
	else
		cb_buf_printf(buf, "null");
	cb_buf_printf(buf,
		      ",\"bytes\":%llu,\"files\":%llu,\"fetch_ms\":%lld,\"verify_ms\":%lld"
		      ",\"unpack_ms\":%lld,\"lock_wait_ms\":%lld,\"total_ms\":%lld,\"attempts\":%u",
		      (unsigned long long)record->bytes, (unsigned long long)record->files,
		      (long long)record->fetch_ms, (long long)record->verify_ms,
		      (long long)record->unpack_ms, (long long)record->lock_wait_ms,
		      (long long)record->total_ms, (unsigned)record->attempts);
	if (record->outcome == CB_OUTCOME_ERROR) {
		cb_buf_printf(buf, ",\"error\":");
		cb_buf_json_string(buf, record->error_kind != NULL ? record->error_kind : "unknown");
	}
	s = env_value("AWS_LAMBDA_FUNCTION_NAME", value, sizeof(value));
	if (s != NULL) {
		cb_buf_printf(buf, ",\"function\":");
		cb_buf_json_string(buf, s);
	}
	s = env_value("AWS_LAMBDA_FUNCTION_VERSION", value, sizeof(value));
	if (s != NULL) {
		cb_buf_printf(buf, ",\"version\":");
		cb_buf_json_string(buf, s);
	}
	s = env_value("AWS_LAMBDA_LOG_STREAM_NAME", value, sizeof(value));
	if (s != NULL) {
		cb_buf_printf(buf, ",\"log_stream\":");
		cb_buf_json_string(buf, s);
	}
	s = env_value("AWS_LAMBDA_INITIALIZATION_TYPE", value, sizeof(value));
	if (s != NULL) {
		cb_buf_printf(buf, ",\"init_type\":");
		cb_buf_json_string(buf, s);
	}
	memory_mb = env_memory_mb();
	if (memory_mb >= 0)
		cb_buf_printf(buf, ",\"memory_mb\":%lld", memory_mb);
}

/*
 * The EMF document: the _aws metadata with one metric directive, every
 * dimension and metric as a top-level member, then the plain properties.
 */
static void build_emf(struct cb_buf *buf, const struct cb_start_record *record)
{
	char function[ENV_VALUE_MAX + 1];
	const char *name = env_value("AWS_LAMBDA_FUNCTION_NAME", function, sizeof(function));
	int reuse = record->outcome == CB_OUTCOME_REUSE || record->outcome == CB_OUTCOME_WAITED;
	int download =
		record->outcome == CB_OUTCOME_DOWNLOAD || record->outcome == CB_OUTCOME_REPAIR;

	cb_buf_printf(buf,
		      "{\"_aws\":{\"Timestamp\":%lld,\"CloudWatchMetrics\":[{"
		      "\"Namespace\":\"coldboot\",\"Dimensions\":[[\"FunctionName\"]],"
		      "\"Metrics\":[{\"Name\":\"Reuse\",\"Unit\":\"Count\"},"
		      "{\"Name\":\"Download\",\"Unit\":\"Count\"},"
		      "{\"Name\":\"ColdPathMs\",\"Unit\":\"Milliseconds\"},"
		      "{\"Name\":\"DownloadBytes\",\"Unit\":\"Bytes\"}]}]},",
		      (long long)record->ts_ms);
	cb_buf_printf(buf, "\"FunctionName\":");
	cb_buf_json_string(buf, name != NULL ? name : "local");
	cb_buf_printf(buf,
		      ",\"Reuse\":%d,\"Download\":%d,\"ColdPathMs\":%lld,\"DownloadBytes\":%llu,",
		      reuse, download, (long long)(record->total_ms > 0 ? record->total_ms : 0),
		      (unsigned long long)record->bytes);
	append_properties(buf, record);
	cb_buf_printf(buf, "}\n");
}

static void build_line(struct cb_buf *buf, const struct cb_start_record *record)
{
	cb_buf_printf(buf, "{");
	append_properties(buf, record);
	cb_buf_printf(buf, "}\n");
}

static enum cb_status append_to_file(const char *file, const char *line, size_t len,
				     struct cb_error *err)
{
	enum cb_status status = CB_OK;
	ssize_t n;
	int fd;

	fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot open the stats file %s: %s", file,
				    strerror(errno));
	/*
	 * One write of the whole line: on an O_APPEND descriptor the kernel moves
	 * to the end and writes under the inode lock, so lines from concurrent
	 * starts never interleave. A retry after a short write could, so there is
	 * none: a short write (a full disk) is reported instead.
	 */
	do {
		n = write(fd, line, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		status = cb_error_set(err, CB_E_IO, errno, "cannot append to the stats file %s: %s",
				      file, strerror(errno));
	else if ((size_t)n != len)
		status = cb_error_set(err, CB_E_IO, 0,
				      "short write to the stats file %s (is the disk full?)", file);
	if (close(fd) != 0 && status == CB_OK)
		status = cb_error_set(err, CB_E_IO, errno, "cannot close the stats file %s: %s",
				      file, strerror(errno));
	return status;
}

/*
 * Writes to stdout without being killed by SIGPIPE when nobody reads it: the
 * handler has not been exec'd yet, and a metric line is never worth its life.
 */
static enum cb_status write_stdout(const char *line, size_t len, struct cb_error *err)
{
	enum cb_status status = CB_OK;
	sigset_t pipe_set;
	sigset_t old_set;
	sigset_t pending;
	int was_pending;
	int write_errno;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old_set);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);

	write_errno = cb_write_full(STDOUT_FILENO, line, len, -1);
	if (write_errno != 0)
		status = cb_error_set(err, CB_E_IO, write_errno,
				      "cannot write the stats record to stdout: %s",
				      strerror(write_errno));

	if (write_errno == EPIPE && !was_pending) {
		/* Consume the SIGPIPE this write raised, so unblocking does not deliver it. */
		struct timespec zero = {0, 0};

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	sigprocmask(SIG_SETMASK, &old_set, NULL);
	return status;
}

enum cb_status cb_stats_emit(const char *file, const struct cb_start_record *record,
			     struct cb_error *err)
{
	char storage[RECORD_MAX];
	struct cb_buf buf;

	cb_buf_init(&buf, storage, sizeof(storage));
	if (file != NULL)
		build_line(&buf, record);
	else
		build_emf(&buf, record);
	if (buf.overflow)
		return cb_error_set(err, CB_E_IO, 0, "the stats record is longer than %d bytes",
				    RECORD_MAX);
	if (file != NULL)
		return append_to_file(file, buf.data, buf.len, err);
	return write_stdout(buf.data, buf.len, err);
}
