/*
 * Lifetime records: one per container, written by the coldboot extension
 * when Lambda sends SHUTDOWN. Beside the start records of stats_record.c
 * they give invocations per container and re-downloads per invocation.
 *
 * As a JSON line (COLDBOOT_STATS=FILE):
 *
 *   {"ts":"2026-01-02T03:04:05.678Z","started":"2026-01-02T02:04:05.000Z",
 *    "container":"<32 hex>","outcome":"shutdown","invocations":41,
 *    "alive_s":3600.678,"shutdown_reason":"spindown","starts":1,"downloads":1,
 *    "function":"f","version":"$LATEST","log_stream":"...","memory_mb":512}
 *
 * container, starts and downloads come from container.json (null when no
 * start was counted in this cache); function, version, log_stream and
 * memory_mb from Lambda's environment when set. On stdout (COLDBOOT_STATS=1)
 * the same properties follow a CloudWatch EMF header with the metrics
 * Invocations (Count) and AliveSeconds (Seconds) under the FunctionName
 * dimension. Either way it is one write of one line under PIPE_BUF.
 */
#include "cache.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIFETIME_RECORD_MAX 2048
#define LIFETIME_ENV_MAX 256

#if LIFETIME_RECORD_MAX > PIPE_BUF
#error "a record must fit in one atomic pipe write"
#endif

/* Lambda's names are ASCII; anything else becomes '?' so the line stays valid JSON. */
static const char *env_ascii(const char *name, char *out, size_t out_size)
{
	const char *value = getenv(name);
	size_t n = 0;

	if (value == NULL || value[0] == '\0')
		return NULL;
	for (; value[n] != '\0' && n + 1 < out_size; n++) {
		unsigned char c = (unsigned char)value[n];

		out[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[n] = '\0';
	return out;
}

static void append_env(struct cb_buf *buf, const char *key, const char *env_name)
{
	char value[LIFETIME_ENV_MAX + 1];

	if (env_ascii(env_name, value, sizeof(value)) == NULL)
		return;
	cb_buf_printf(buf, ",\"%s\":", key);
	cb_buf_json_string(buf, value);
}

static void append_properties(struct cb_buf *buf, const struct cb_lifetime_record *record)
{
	char ts[40];
	const char *memory = getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
	int64_t alive_ms = record->alive_ms > 0 ? record->alive_ms : 0;

	cb_clock_format_rfc3339(record->ts_ms, ts, sizeof(ts));
	cb_buf_printf(buf, "\"ts\":");
	cb_buf_json_string(buf, ts);
	cb_clock_format_rfc3339(record->started_ms, ts, sizeof(ts));
	cb_buf_printf(buf, ",\"started\":");
	cb_buf_json_string(buf, ts);
	cb_buf_printf(buf, ",\"container\":");
	if (record->container != NULL)
		cb_buf_json_string(buf, record->container->id);
	else
		cb_buf_printf(buf, "null");
	cb_buf_printf(buf, ",\"outcome\":\"shutdown\",\"invocations\":%llu,\"alive_s\":%lld.%03lld",
		      (unsigned long long)record->invocations, (long long)(alive_ms / 1000),
		      (long long)(alive_ms % 1000));
	cb_buf_printf(buf, ",\"shutdown_reason\":");
	if (record->shutdown_reason != NULL && record->shutdown_reason[0] != '\0')
		cb_buf_json_string(buf, record->shutdown_reason);
	else
		cb_buf_printf(buf, "null");
	if (record->container != NULL)
		cb_buf_printf(buf, ",\"starts\":%llu,\"downloads\":%llu",
			      (unsigned long long)record->container->starts,
			      (unsigned long long)record->container->downloads);
	else
		cb_buf_printf(buf, ",\"starts\":null,\"downloads\":null");
	append_env(buf, "function", "AWS_LAMBDA_FUNCTION_NAME");
	append_env(buf, "version", "AWS_LAMBDA_FUNCTION_VERSION");
	append_env(buf, "log_stream", "AWS_LAMBDA_LOG_STREAM_NAME");
	if (memory != NULL && memory[0] >= '0' && memory[0] <= '9' &&
	    strspn(memory, "0123456789") == strlen(memory) && strlen(memory) < 10)
		cb_buf_printf(buf, ",\"memory_mb\":%s", memory);
}

static void build_emf(struct cb_buf *buf, const struct cb_lifetime_record *record)
{
	char function[LIFETIME_ENV_MAX + 1];
	const char *name = env_ascii("AWS_LAMBDA_FUNCTION_NAME", function, sizeof(function));
	int64_t alive_ms = record->alive_ms > 0 ? record->alive_ms : 0;

	cb_buf_printf(buf,
		      "{\"_aws\":{\"Timestamp\":%lld,\"CloudWatchMetrics\":[{"
		      "\"Namespace\":\"coldboot\",\"Dimensions\":[[\"FunctionName\"]],"
		      "\"Metrics\":[{\"Name\":\"Invocations\",\"Unit\":\"Count\"},"
		      "{\"Name\":\"AliveSeconds\",\"Unit\":\"Seconds\"}]}]},",
		      (long long)record->ts_ms);
	cb_buf_printf(buf, "\"FunctionName\":");
	cb_buf_json_string(buf, name != NULL ? name : "local");
	cb_buf_printf(buf, ",\"Invocations\":%llu,\"AliveSeconds\":%lld.%03lld,",
		      (unsigned long long)record->invocations, (long long)(alive_ms / 1000),
		      (long long)(alive_ms % 1000));
	append_properties(buf, record);
	cb_buf_printf(buf, "}\n");
}

/* One write() of the whole line: O_APPEND keeps concurrent writers' lines whole. */
static enum cb_status write_line(int fd, const char *what, const char *line, size_t len,
				 struct cb_error *err)
{
	ssize_t n;

	do {
		n = write(fd, line, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return cb_error_set(err, CB_E_IO, errno,
				    "cannot write the lifetime record to %s: %s", what,
				    strerror(errno));
	if ((size_t)n != len)
		return cb_error_set(err, CB_E_IO, 0,
				    "short write of the lifetime record to %s (is the disk full?)",
				    what);
	return CB_OK;
}

enum cb_status cb_stats_emit_lifetime(const char *file, const struct cb_lifetime_record *record,
				      struct cb_error *err)
{
	char storage[LIFETIME_RECORD_MAX];
	struct cb_buf buf;
	enum cb_status status;
	int fd;

	cb_buf_init(&buf, storage, sizeof(storage));
	if (file == NULL) {
		build_emf(&buf, record);
	} else {
		cb_buf_printf(&buf, "{");
		append_properties(&buf, record);
		cb_buf_printf(&buf, "}\n");
	}
	if (buf.overflow)
		return cb_error_set(err, CB_E_IO, 0, "the lifetime record is longer than %d bytes",
				    LIFETIME_RECORD_MAX);
	if (file == NULL)
		return write_line(STDOUT_FILENO, "stdout", buf.data, buf.len, err);
	fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot open the stats file %s: %s", file,
				    strerror(errno));
	status = write_line(fd, file, buf.data, buf.len, err);
	if (close(fd) != 0 && status == CB_OK)
		status = cb_error_set(err, CB_E_IO, errno, "cannot close the stats file %s: %s",
				      file, strerror(errno));
	return status;
}
