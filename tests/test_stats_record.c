/*
 * cache/stats_record.c: JSON lines appended under concurrency, and the
 * CloudWatch Embedded Metric Format line on stdout, checked against the EMF
 * specification by Python's json module (a parser we did not write).
 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../cache/cache.h"
#include "../cache/json.h"
#include "cbunit.h"

static char test_dir[PATH_MAX];

static const char *const lambda_vars[] = {
	"AWS_LAMBDA_FUNCTION_NAME",        "AWS_LAMBDA_FUNCTION_VERSION",
	"AWS_LAMBDA_LOG_STREAM_NAME",      "AWS_LAMBDA_INITIALIZATION_TYPE",
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
};

static int setup(void **state)
{
	(void)state;
	if (cb_test_make_dir(test_dir, sizeof(test_dir), "stats-record") != 0)
		return -1;
	for (size_t i = 0; i < sizeof(lambda_vars) / sizeof(lambda_vars[0]); i++)
		unsetenv(lambda_vars[i]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cb_test_remove_tree(test_dir);
	return 0;
}

static void path_in_test_dir(char *out, size_t out_size, const char *name)
{
	int n = snprintf(out, out_size, "%s/%s", test_dir, name);

	assert_true(n > 0 && (size_t)n < out_size);
}

/* Reads a whole small file into a heap buffer the caller frees. */
static char *slurp(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *data;
	long size;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	data = malloc((size_t)size + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	data[size] = '\0';
	fclose(f);
	*len_out = (size_t)size;
	return data;
}

static int run_python(const char *script, const char *arg1, const char *arg2)
{
	pid_t pid = fork();
	int status = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("python3", "python3", "-c", script, arg1, arg2, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_outcome_names(void **state)
{
	(void)state;
	assert_string_equal(cb_outcome_name(CB_OUTCOME_REUSE), "reuse");
	assert_string_equal(cb_outcome_name(CB_OUTCOME_DOWNLOAD), "download");
	assert_string_equal(cb_outcome_name(CB_OUTCOME_REPAIR), "repair");
	assert_string_equal(cb_outcome_name(CB_OUTCOME_WAITED), "waited");
	assert_string_equal(cb_outcome_name(CB_OUTCOME_ERROR), "error");
}

static void test_line_fields(void **state)
{
	static const char check[] =
		"import json, sys\n"
		"lines = open(sys.argv[1], 'rb').read().decode('utf-8').split('\\n')\n"
		"assert lines[-1] == '' and len(lines) == 3, lines\n"
		"a, b = json.loads(lines[0]), json.loads(lines[1])\n"
		"want = {'ts': '2026-11-22T07:47:41.123Z', 'container': "
		"'0123456789abcdef0123456789abcdef', 'start': 7, 'outcome': 'download', "
		"'digest': 'ab' * 16, 'bytes': 123456789, 'files': 42, 'fetch_ms': 250, "
		"'verify_ms': 3, 'unpack_ms': 180, 'lock_wait_ms': 0, 'total_ms': 440, "
		"'attempts': 2, 'function': 'fn\"x', 'version': '$LATEST', "
		"'log_stream': '2026/11/22/[$LATEST]0123abcd', 'init_type': 'on-demand', "
		"'memory_mb': 1024}\n"
		"assert a == want, a\n"
		"assert b['outcome'] == 'error' and b['error'] == 'checksum', b\n"
		"assert b['digest'] is None and b['function'] == 'fn\"x', b\n"
		"assert 'error' not in a\n";
	struct cb_container c = {.id = "0123456789abcdef0123456789abcdef",
				 .first_start_ms = 0,
				 .starts = 7,
				 .downloads = 1};
	struct cb_start_record r = {
		.ts_ms = 1795333661123LL, /* 2026-11-22T07:47:41.123Z */
		.container = &c,
		.outcome = CB_OUTCOME_DOWNLOAD,
		.digest = "abababababababababababababababab",
		.bytes = 123456789,
		.files = 42,
		.attempts = 2,
		.fetch_ms = 250,
		.verify_ms = 3,
		.unpack_ms = 180,
		.lock_wait_ms = 0,
		.total_ms = 440,
	};
	struct cb_error err;
	char path[PATH_MAX];

	(void)state;
	path_in_test_dir(path, sizeof(path), "fields.jsonl");
	setenv("AWS_LAMBDA_FUNCTION_NAME", "fn\"x", 1);
	setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST", 1);
	setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]0123abcd", 1);
	setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand", 1);
	setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024", 1);
	cb_error_init(&err);
	assert_int_equal(cb_stats_emit(path, &r, &err), CB_OK);
	r.outcome = CB_OUTCOME_ERROR;
	r.error_kind = cb_status_name(CB_E_CHECKSUM);
	r.digest = NULL;
	assert_int_equal(cb_stats_emit(path, &r, &err), CB_OK);
	assert_int_equal(run_python(check, path, ""), 0);
}

#define WRITERS 8
#define LINES_EACH 300

static void test_concurrent_appends_are_never_torn(void **state)
{
	pid_t pids[WRITERS];
	char path[PATH_MAX];
	char long_stream[201];
	char *data;
	char *line;
	char *save = NULL;
	size_t len;
	int seen[WRITERS][LINES_EACH + 1];
	int lines = 0;

	(void)state;
	path_in_test_dir(path, sizeof(path), "race.jsonl");
	/* Long lines make a torn or interleaved write more likely to show. */
	memset(long_stream, 's', sizeof(long_stream) - 1);
	long_stream[sizeof(long_stream) - 1] = '\0';
	setenv("AWS_LAMBDA_LOG_STREAM_NAME", long_stream, 1);
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			struct cb_container c = {.first_start_ms = 0, .downloads = 0};
			struct cb_start_record r = {.container = &c, .outcome = CB_OUTCOME_REUSE};
			struct cb_error err;

			snprintf(c.id, sizeof(c.id), "%032x", (unsigned)w);
			for (int k = 1; k <= LINES_EACH; k++) {
				c.starts = (uint64_t)k;
				r.ts_ms = cb_clock_wall_ms();
				if (cb_stats_emit(path, &r, &err) != CB_OK)
					_exit(1);
			}
			_exit(0);
		}
	}
	for (int w = 0; w < WRITERS; w++) {
		int status = 0;

		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}

	memset(seen, 0, sizeof(seen));
	data = slurp(path, &len);
	assert_true(len > 0 && data[len - 1] == '\n');
	for (line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char id[64];
		char stream[256];
		uint64_t start = 0;
		unsigned w = 0;

		assert_true(line[0] == '{' && line[strlen(line) - 1] == '}');
		assert_int_equal(cb_json_get_string(line, "container", id, sizeof(id)), 0);
		assert_int_equal(cb_json_get_u64(line, "start", &start), 0);
		assert_int_equal(cb_json_get_string(line, "log_stream", stream, sizeof(stream)), 0);
		assert_string_equal(stream, long_stream);
		assert_int_equal(sscanf(id, "%x", &w), 1);
		assert_true(w < WRITERS && start >= 1 && start <= LINES_EACH);
		seen[w][start]++;
		lines++;
	}
	free(data);
	assert_int_equal(lines, WRITERS * LINES_EACH);
	for (int w = 0; w < WRITERS; w++) {
		for (int k = 1; k <= LINES_EACH; k++)
			assert_int_equal(seen[w][k], 1);
	}
}

/*
 * Checks one EMF document against the specification: the _aws metadata
 * object, the metric directive, and every dimension and metric referenced
 * present at the root with the right type.
 */
static const char emf_check[] =
	"import json, sys\n"
	"raw = open(sys.argv[1], 'rb').read()\n"
	"assert raw.endswith(b'\\n') and raw.count(b'\\n') == 1, raw\n"
	"doc = json.loads(raw)\n"
	"expect = json.loads(sys.argv[2])\n"
	"assert isinstance(doc, dict)\n"
	"aws = doc['_aws']\n"
	"assert set(aws) == {'Timestamp', 'CloudWatchMetrics'}, aws\n"
	"assert isinstance(aws['Timestamp'], int)\n"
	"assert aws['Timestamp'] == expect.pop('Timestamp')\n"
	"cwm = aws['CloudWatchMetrics']\n"
	"assert isinstance(cwm, list) and len(cwm) == 1\n"
	"d = cwm[0]\n"
	"assert set(d) == {'Namespace', 'Dimensions', 'Metrics'}, d\n"
	"assert d['Namespace'] == 'coldboot'\n"
	"assert d['Dimensions'] == [['FunctionName']]\n"
	"units = {'Seconds','Microseconds','Milliseconds','Bytes','Kilobytes','Megabytes',\n"
	"  'Gigabytes','Terabytes','Bits','Kilobits','Megabits','Gigabits','Terabits',\n"
	"  'Percent','Count','Bytes/Second','Kilobytes/Second','Megabytes/Second',\n"
	"  'Gigabytes/Second','Terabytes/Second','Bits/Second','Kilobits/Second',\n"
	"  'Megabits/Second','Gigabits/Second','Terabits/Second','Count/Second','None'}\n"
	"names = {}\n"
	"for m in d['Metrics']:\n"
	"    assert set(m) == {'Name', 'Unit'}, m\n"
	"    assert m['Unit'] in units, m\n"
	"    names[m['Name']] = m['Unit']\n"
	"assert names == {'Reuse': 'Count', 'Download': 'Count', 'ColdPathMs': 'Milliseconds',\n"
	"                 'DownloadBytes': 'Bytes'}, names\n"
	"for dim_set in d['Dimensions']:\n"
	"    assert 1 <= len(dim_set) <= 30\n"
	"    for dim in dim_set:\n"
	"        assert isinstance(doc[dim], str) and doc[dim], dim\n"
	"for name in names:\n"
	"    v = doc[name]\n"
	"    assert isinstance(v, (int, float)) and not isinstance(v, bool), name\n"
	"for k in expect.pop('absent', []):\n"
	"    assert k not in doc, k\n"
	"for k, v in expect.items():\n"
	"    assert k in doc and doc[k] == v, (k, doc.get(k), v)\n";

/* Runs cb_stats_emit(NULL, ...) in a child whose stdout is out_path. */
static void emit_to_stdout_file(const char *out_path, const struct cb_start_record *r)
{
	pid_t pid = fork();
	int status = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct cb_error err;
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(2);
		close(fd);
		/*
		 * Left in stdio's buffer and never flushed (_exit): had the record
		 * gone through stdio, it would be lost the same way.
		 */
		fputs("stdio-buffered", stdout);
		if (cb_stats_emit(NULL, r, &err) != CB_OK)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_emf_on_lambda(void **state)
{
	struct cb_container c = {.id = "fedcba9876543210fedcba9876543210", .starts = 3};
	struct cb_start_record r = {
		.ts_ms = 1795333661123LL,
		.container = &c,
		.outcome = CB_OUTCOME_DOWNLOAD,
		.digest = "0123456789abcdef0123456789abcdef",
		.bytes = 52428800,
		.files = 1200,
		.attempts = 1,
		.fetch_ms = 900,
		.verify_ms = 20,
		.unpack_ms = 700,
		.lock_wait_ms = 1,
		.total_ms = 1650,
	};
	char path[PATH_MAX];

	(void)state;
	path_in_test_dir(path, sizeof(path), "emf-lambda.out");
	setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function", 1);
	setenv("AWS_LAMBDA_FUNCTION_VERSION", "12", 1);
	setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[12]deadbeef", 1);
	setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand", 1);
	setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048", 1);
	emit_to_stdout_file(path, &r);
	assert_int_equal(
		run_python(emf_check, path,
			   "{\"Timestamp\": 1795333661123, \"FunctionName\": \"my-function\","
			   " \"Reuse\": 0, \"Download\": 1, \"ColdPathMs\": 1650,"
			   " \"DownloadBytes\": 52428800, \"ts\": \"2026-11-22T07:47:41.123Z\","
			   " \"container\": \"fedcba9876543210fedcba9876543210\", \"start\": 3,"
			   " \"outcome\": \"download\", \"bytes\": 52428800, \"files\": 1200,"
			   " \"fetch_ms\": 900, \"verify_ms\": 20, \"unpack_ms\": 700,"
			   " \"lock_wait_ms\": 1, \"total_ms\": 1650, \"attempts\": 1,"
			   " \"function\": \"my-function\", \"version\": \"12\","
			   " \"log_stream\": \"2026/11/22/[12]deadbeef\","
			   " \"init_type\": \"on-demand\", \"memory_mb\": 2048, \"absent\": [\"error\"]}"),
		0);

	/* A repair counts as a download; an error is neither. */
	r.outcome = CB_OUTCOME_REPAIR;
	emit_to_stdout_file(path, &r);
	assert_int_equal(run_python(emf_check, path,
				    "{\"Timestamp\": 1795333661123, \"Reuse\": 0, \"Download\": 1,"
				    " \"outcome\": \"repair\"}"),
			 0);
	r.outcome = CB_OUTCOME_ERROR;
	r.error_kind = "download";
	r.bytes = 0;
	emit_to_stdout_file(path, &r);
	assert_int_equal(run_python(emf_check, path,
				    "{\"Timestamp\": 1795333661123, \"Reuse\": 0, \"Download\": 0,"
				    " \"DownloadBytes\": 0, \"outcome\": \"error\","
				    " \"error\": \"download\"}"),
			 0);
}

static void test_emf_outside_lambda(void **state)
{
	struct cb_container c = {.id = "00000000000000000000000000000001", .starts = 9};
	struct cb_start_record r = {
		.ts_ms = 1000,
		.container = &c,
		.outcome = CB_OUTCOME_WAITED,
		.total_ms = 5,
	};
	char path[PATH_MAX];

	(void)state;
	path_in_test_dir(path, sizeof(path), "emf-local.out");
	emit_to_stdout_file(path, &r);
	assert_int_equal(run_python(emf_check, path,
				    "{\"Timestamp\": 1000, \"FunctionName\": \"local\", \"Reuse\": 1,"
				    " \"Download\": 0, \"ColdPathMs\": 5, \"DownloadBytes\": 0,"
				    " \"ts\": \"1970-01-01T00:00:01.000Z\", \"start\": 9,"
				    " \"outcome\": \"waited\", \"digest\": null, \"absent\": [\"function\","
				    " \"version\", \"log_stream\", \"init_type\", \"memory_mb\","
				    " \"error\"]}"),
			 0);
}

static void test_emf_hostile_environment_stays_valid(void **state)
{
	struct cb_container c = {.id = "00000000000000000000000000000002", .starts = 1};
	struct cb_start_record r = {.ts_ms = 1000, .container = &c, .outcome = CB_OUTCOME_REUSE};
	char path[PATH_MAX];
	char huge[8192];

	(void)state;
	path_in_test_dir(path, sizeof(path), "emf-hostile.out");
	/* Invalid UTF-8, quotes, control bytes and a value far beyond any Lambda limit. */
	setenv("AWS_LAMBDA_FUNCTION_NAME", "a\"b\\c\n\x01\xff\xc3(", 1);
	memset(huge, 'x', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	setenv("AWS_LAMBDA_LOG_STREAM_NAME", huge, 1);
	setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "12ab", 1);
	emit_to_stdout_file(path, &r);
	assert_int_equal(run_python(emf_check, path,
				    "{\"Timestamp\": 1000, \"FunctionName\": \"a\\\"b\\\\c\\n\\u0001?\?(\","
				    " \"Reuse\": 1, \"absent\": [\"memory_mb\"]}"),
			 0);
	assert_int_equal(run_python("import json, sys\n"
				    "doc = json.loads(open(sys.argv[1], 'rb').read())\n"
				    "assert doc['log_stream'] == 'x' * 256, len(doc['log_stream'])\n",
				    path, ""),
			 0);
}

static void test_closed_stdout_pipe_is_an_error_not_a_death(void **state)
{
	struct cb_container c = {.id = "00000000000000000000000000000003", .starts = 1};
	struct cb_start_record r = {.ts_ms = 1000, .container = &c, .outcome = CB_OUTCOME_REUSE};
	int fds[2];
	int go[2];
	pid_t pid;
	int status = 0;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cb_error err;
		char byte;

		signal(SIGPIPE, SIG_DFL);
		close(fds[0]); /* nobody will ever read */
		close(go[1]);
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(2);
		/* Waits until the parent has closed its read end too (EOF on go). */
		if (read(go[0], &byte, 1) != 0)
			_exit(4);
		cb_error_init(&err);
		if (cb_stats_emit(NULL, &r, &err) != CB_E_IO || err.sys_errno != EPIPE)
			_exit(3);
		/*
		 * Reaching this line means the SIGPIPE the write raised was consumed:
		 * left pending, it would have killed this child when emit unblocked it.
		 */
		_exit(0);
	}
	close(fds[0]);
	close(fds[1]);
	close(go[0]);
	close(go[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_unwritable_file_is_an_error(void **state)
{
	struct cb_container c = {.id = "00000000000000000000000000000004", .starts = 1};
	struct cb_start_record r = {.ts_ms = 1000, .container = &c, .outcome = CB_OUTCOME_REUSE};
	struct cb_error err;
	char path[PATH_MAX];

	(void)state;
	path_in_test_dir(path, sizeof(path), "no/such/dir/stats.jsonl");
	cb_error_init(&err);
	assert_int_equal(cb_stats_emit(path, &r, &err), CB_E_IO);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_non_null(strstr(err.message, "stats.jsonl"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcome_names),
		cmocka_unit_test_setup_teardown(test_line_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_appends_are_never_torn, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_emf_on_lambda, setup, teardown),
		cmocka_unit_test_setup_teardown(test_emf_outside_lambda, setup, teardown),
		cmocka_unit_test_setup_teardown(test_emf_hostile_environment_stays_valid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_closed_stdout_pipe_is_an_error_not_a_death,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwritable_file_is_an_error, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
