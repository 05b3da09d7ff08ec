/*
 * `coldboot stats` (bootstrap/stats_cmd.c) on crafted inputs in
 * tests/data/stats/: our JSON lines, a `filter-log-events` JSON export, its
 * `--output text` form, and `aws logs tail` text with REPORT lines. Also a
 * round trip through the real record writer (cache/stats_record.c), the
 * input bounds, and the command line.
 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
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

#include "../bootstrap/stats_cmd.h"
#include "../bootstrap/stats_json.h"
#include "../cache/cache.h"
#include "cbunit.h"

static char test_dir[PATH_MAX];
static char data_dir[PATH_MAX];

/* What one run of the command left behind. */
struct run {
	int code;
	char *out; /* stdout, NUL-terminated */
	size_t out_len;
	char *err; /* stderr */
	struct cb_stats_json_value json;
	int json_ok;
};

static int setup(void **state)
{
	const char *src = getenv("CB_TEST_SRC");
	int n;

	(void)state;
	if (src == NULL || cb_test_make_dir(test_dir, sizeof(test_dir), "stats-cmd") != 0)
		return -1;
	n = snprintf(data_dir, sizeof(data_dir), "%s/data/stats", src);
	if (n < 0 || (size_t)n >= sizeof(data_dir) - 64)
		return -1;
	unsetenv("AWS_LAMBDA_FUNCTION_NAME");
	unsetenv("AWS_LAMBDA_LOG_STREAM_NAME");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cb_test_remove_tree(test_dir);
	return 0;
}

static char *path_in(const char *dir, const char *name)
{
	char *path = malloc(PATH_MAX);

	assert_non_null(path);
	assert_true(snprintf(path, PATH_MAX, "%s/%s", dir, name) < PATH_MAX);
	return path;
}

static char *slurp(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *data;
	long size;

	if (f == NULL)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	data = malloc((size_t)size + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	data[size] = '\0';
	fclose(f);
	if (len_out != NULL)
		*len_out = (size_t)size;
	return data;
}

static void write_text(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/*
 * Runs cb_stats_cmd_main in this process with stdout and stderr sent to files
 * (and stdin from stdin_path when not NULL), then parses stdout as JSON.
 */
static void run_stats(struct run *run, const char *stdin_path, int argc, ...)
{
	char *argv[32];
	char *out_path = path_in(test_dir, "stdout");
	char *err_path = path_in(test_dir, "stderr");
	int saved_out = dup(STDOUT_FILENO);
	int saved_err = dup(STDERR_FILENO);
	int saved_in = dup(STDIN_FILENO);
	int fd;
	size_t consumed;
	va_list ap;

	assert_true(argc < 32);
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;

	fflush(stdout);
	fflush(stderr);
	fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0 && dup2(fd, STDOUT_FILENO) >= 0);
	close(fd);
	fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0 && dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
	if (stdin_path != NULL) {
		fd = open(stdin_path, O_RDONLY);
		assert_true(fd >= 0 && dup2(fd, STDIN_FILENO) >= 0);
		close(fd);
	}
	run->code = cb_stats_cmd_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	dup2(saved_in, STDIN_FILENO);
	close(saved_out);
	close(saved_err);
	close(saved_in);

	run->out = slurp(out_path, &run->out_len);
	run->err = slurp(err_path, NULL);
	run->json_ok = cb_stats_json_parse(run->out, run->out_len, &run->json, &consumed) == 0 &&
		       run->json.type == CB_STATS_JSON_OBJECT;
	free(out_path);
	free(err_path);
}

static void run_free(struct run *run)
{
	free(run->out);
	free(run->err);
}

/* Looks up a dotted path ("container_lifetime.starts.median") in the JSON report. */
static struct cb_stats_json_value at(const struct run *run, const char *path)
{
	struct cb_stats_json_value v = run->json;
	char key[128];
	const char *p = path;

	assert_true(run->json_ok);
	while (*p != '\0') {
		size_t n = strcspn(p, ".");
		struct cb_stats_json_value next;

		assert_true(n < sizeof(key));
		memcpy(key, p, n);
		key[n] = '\0';
		if (cb_stats_json_member(&v, key, &next) != 0)
			fail_msg("no %s in the report: %s", path, run->out);
		v = next;
		p += n;
		if (*p == '.')
			p++;
	}
	return v;
}

static int64_t num(const struct run *run, const char *path)
{
	struct cb_stats_json_value v = at(run, path);
	int64_t n = 0;

	if (cb_stats_json_i64(&v, &n) != 0)
		fail_msg("%s is not a number in %s", path, run->out);
	return n;
}

/* A fraction printed with six decimals, compared in millionths. */
static int64_t micros(const struct run *run, const char *path)
{
	struct cb_stats_json_value v = at(run, path);
	char text[64];
	size_t len = (size_t)(v.end - v.begin);

	assert_int_equal(v.type, CB_STATS_JSON_NUMBER);
	assert_true(len < sizeof(text));
	memcpy(text, v.begin, len);
	text[len] = '\0';
	return (int64_t)(strtod(text, NULL) * 1e6 + 0.5);
}

static int is_null(const struct run *run, const char *path)
{
	return at(run, path).type == CB_STATS_JSON_NULL;
}

static size_t count_of(const char *haystack, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void assert_core(const struct run *run, int64_t starts, int64_t containers,
			int64_t downloads, int64_t reuses)
{
	assert_int_equal(run->code, 0);
	assert_int_equal(num(run, "starts"), starts);
	assert_int_equal(num(run, "containers"), containers);
	assert_int_equal(num(run, "downloads"), downloads);
	assert_int_equal(num(run, "reuses"), reuses);
	assert_int_equal(micros(run, "reuse_rate"), (reuses * 1000000 + starts / 2) / starts);
	assert_int_equal(micros(run, "redownload_rate"),
			 (downloads * 1000000 + starts / 2) / starts);
}

static void test_jsonl_records(void **state)
{
	char *input = path_in(data_dir, "records.jsonl");
	struct cb_stats_json_value first;
	struct run run;

	(void)state;
	run_stats(&run, NULL, 3, "stats", "--json", input);
	assert_core(&run, 19, 3, 4, 12);
	assert_int_equal(num(&run, "errors"), 3);
	assert_int_equal(num(&run, "outcomes.reuse"), 11);
	assert_int_equal(num(&run, "outcomes.download"), 3);
	assert_int_equal(num(&run, "outcomes.repair"), 1);
	assert_int_equal(num(&run, "outcomes.waited"), 1);
	assert_int_equal(num(&run, "outcomes.error"), 3);
	assert_int_equal(num(&run, "errors_by_kind.download"), 1);
	assert_int_equal(num(&run, "errors_by_kind.checksum"), 1);
	assert_int_equal(num(&run, "errors_by_kind.io"), 1);
	assert_int_equal(num(&run, "container_lifetime.starts.min"), 4);
	assert_int_equal(num(&run, "container_lifetime.starts.median"), 4);
	assert_int_equal(num(&run, "container_lifetime.starts.p90"), 10);
	assert_int_equal(num(&run, "container_lifetime.starts.max"), 10);
	assert_int_equal(micros(&run, "container_lifetime.minutes.min"), 1500000);
	assert_int_equal(micros(&run, "container_lifetime.minutes.median"), 6000000);
	assert_int_equal(micros(&run, "container_lifetime.minutes.max"), 9000000);
	assert_int_equal(num(&run, "download_ms.count"), 4);
	assert_int_equal(num(&run, "download_ms.median"), 700);
	assert_int_equal(num(&run, "download_ms.p90"), 1200);
	assert_int_equal(num(&run, "fetch_ms.median"), 450);
	assert_int_equal(num(&run, "bytes_downloaded"), 4 * 1048576);
	assert_int_equal(num(&run, "starts_without_container"), 1);
	assert_true(is_null(&run, "invocations"));
	first = at(&run, "period.first");
	assert_true(cb_stats_json_string_is(&first, "2026-11-22T07:00:00.000Z"));
	assert_int_equal(num(&run, "input.records"), 19);
	assert_int_equal(num(&run, "input.duplicates"), 1);
	assert_int_equal(num(&run, "input.ignored"), 4);
	assert_int_equal(num(&run, "input.too_long"), 0);
	run_free(&run);
	free(input);
}

static void test_outputs_match_expected_files(void **state)
{
	char *input = path_in(data_dir, "records.jsonl");
	char *expected_text_path = path_in(data_dir, "records.expected.txt");
	char *expected_json_path = path_in(data_dir, "records.expected.json");
	char *expected_text = slurp(expected_text_path, NULL);
	char *expected_json = slurp(expected_json_path, NULL);
	struct run run;

	(void)state;
	run_stats(&run, NULL, 2, "stats", input);
	assert_int_equal(run.code, 0);
	assert_string_equal(run.out, expected_text);
	run_free(&run);
	run_stats(&run, NULL, 3, "stats", "--json", input);
	assert_string_equal(run.out, expected_json);
	run_free(&run);
	free(expected_text);
	free(expected_json);
	free(expected_text_path);
	free(expected_json_path);
	free(input);
}

static void test_filter_log_events_json(void **state)
{
	char *input = path_in(data_dir, "filter-log-events.json");
	struct run run;

	(void)state;
	run_stats(&run, NULL, 3, "stats", "--json", input);
	assert_core(&run, 3, 2, 2, 1);
	assert_int_equal(num(&run, "invocations.reports"), 5);
	assert_int_equal(num(&run, "invocations.log_streams"), 2);
	assert_int_equal(num(&run, "invocations.init_reports"), 2);
	assert_int_equal(num(&run, "invocations.per_log_stream.min"), 2);
	assert_int_equal(num(&run, "invocations.per_log_stream.max"), 3);
	assert_int_equal(num(&run, "input.duplicates"), 1);
	assert_int_equal(num(&run, "input.duplicate_reports"), 1);
	assert_int_equal(num(&run, "input.ignored"), 5); /* 2 START, 2 END, 1 handler line */
	assert_int_equal(num(&run, "bytes_downloaded"), 100 * 1048576);
	assert_int_equal(num(&run, "container_lifetime.starts.max"), 2);
	run_free(&run);
	free(input);
}

static void test_logs_tail_text(void **state)
{
	char *input = path_in(data_dir, "logs-tail.txt");
	struct run run;

	(void)state;
	run_stats(&run, NULL, 3, "stats", "--json", input);
	assert_core(&run, 5, 2, 2, 3);
	assert_int_equal(num(&run, "invocations.reports"), 5);
	assert_int_equal(num(&run, "invocations.log_streams"), 2);
	assert_int_equal(num(&run, "invocations.init_reports"), 2);
	assert_int_equal(num(&run, "invocations.per_log_stream.median"), 2);
	assert_int_equal(num(&run, "input.ignored"), 4); /* INIT_START, START, END, handler */
	assert_int_equal(micros(&run, "container_lifetime.minutes.max"), 7000000);
	run_free(&run);
	free(input);
}

static void test_filter_log_events_text(void **state)
{
	char *input = path_in(data_dir, "filter-log-events.txt");
	struct run run;

	(void)state;
	run_stats(&run, NULL, 3, "stats", "--json", input);
	assert_core(&run, 2, 1, 1, 1);
	assert_int_equal(num(&run, "invocations.reports"), 2);
	assert_int_equal(num(&run, "invocations.log_streams"), 1);
	assert_int_equal(num(&run, "invocations.init_reports"), 1);
	run_free(&run);
	free(input);
}

/* Lifetime records of the coldboot extension ("outcome":"shutdown"), beside start records. */
static void test_lifetime_records(void **state)
{
	char *input = path_in(data_dir, "extension.jsonl");
	char *svg_path = path_in(test_dir, "lifetimes.svg");
	char *svg;
	struct run run;

	(void)state;
	run_stats(&run, NULL, 5, "stats", "--json", "--svg", svg_path, input);
	assert_core(&run, 4, 2, 2, 2);
	assert_int_equal(num(&run, "shutdowns.containers"), 4); /* one of them without an id */
	assert_int_equal(num(&run, "shutdowns.invocations"), 40 + 10 + 5 + 0);
	assert_int_equal(num(&run, "shutdowns.invocations_per_container.median"), 5);
	assert_int_equal(num(&run, "shutdowns.invocations_per_container.max"), 40);
	assert_int_equal(micros(&run, "shutdowns.alive_minutes.median"), 1000000);
	assert_int_equal(micros(&run, "shutdowns.alive_minutes.max"), 30010000);
	/* 55 invocations over the 3 downloads those containers made. */
	assert_int_equal(micros(&run, "shutdowns.invocations_per_download"), 18333333);
	assert_int_equal(num(&run, "shutdowns.reasons.spindown"), 1);
	assert_int_equal(num(&run, "shutdowns.reasons.timeout"), 1);
	assert_int_equal(num(&run, "shutdowns.reasons.failure"), 1);
	assert_int_equal(num(&run, "shutdowns.reasons.unknown"), 1);
	assert_int_equal(num(&run, "input.lifetime_records"), 4);
	assert_int_equal(num(&run, "input.duplicate_lifetimes"), 1);
	assert_int_equal(num(&run, "input.ignored"), 0);
	run_free(&run);
	/* The two drawn containers end in a shutdown mark; the legend shows one too. */
	svg = slurp(svg_path, NULL);
	assert_int_equal(count_of(svg, "width=\"3\" height=\"16\""), 2 + 1);
	assert_non_null(strstr(svg, ">shutdown</text>"));
	free(svg);

	/* Without lifetime records there is no such section, and no such legend entry. */
	free(input);
	input = path_in(data_dir, "records.jsonl");
	run_stats(&run, NULL, 5, "stats", "--json", "--svg", svg_path, input);
	assert_true(is_null(&run, "shutdowns"));
	run_free(&run);
	svg = slurp(svg_path, NULL);
	assert_null(strstr(svg, ">shutdown</text>"));
	free(svg);
	free(svg_path);
	free(input);
}

/* Lifetime records written by the real writer (cache/stats_lifetime.c), in both formats. */
static void test_lifetime_round_trip(void **state)
{
	char *jsonl = path_in(test_dir, "lifetimes.jsonl");
	char *emf = path_in(test_dir, "lifetimes.emf");
	struct cb_container c = {.first_start_ms = 0};
	struct cb_lifetime_record l;
	struct cb_error err;
	struct run run;
	pid_t pid;
	int status = 0;

	(void)state;
	for (int k = 1; k <= 3; k++) {
		memset(&l, 0, sizeof(l));
		snprintf(c.id, sizeof(c.id), "%032d", k);
		c.starts = (uint64_t)k;
		c.downloads = 1;
		l.container = &c;
		l.ts_ms = 1795334400000LL + k * 600000;
		l.started_ms = 1795334400000LL;
		l.invocations = (uint64_t)(10 * k);
		l.alive_ms = k * 600000 + 250;
		l.shutdown_reason = k == 3 ? "timeout" : "spindown";
		cb_error_init(&err);
		assert_int_equal(cb_stats_emit_lifetime(jsonl, &l, &err), CB_OK);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			int fd = open(emf, O_WRONLY | O_CREAT | O_APPEND, 0644);

			if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
				_exit(2);
			setenv("AWS_LAMBDA_FUNCTION_NAME", "round-trip", 1);
			_exit(cb_stats_emit_lifetime(NULL, &l, &err) == CB_OK ? 0 : 1);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	run_stats(&run, NULL, 3, "stats", "--json", jsonl);
	assert_int_equal(run.code, 0);
	assert_int_equal(num(&run, "starts"), 0);
	assert_int_equal(num(&run, "shutdowns.containers"), 3);
	assert_int_equal(num(&run, "shutdowns.invocations"), 60);
	assert_int_equal(num(&run, "shutdowns.invocations_per_container.median"), 20);
	assert_int_equal(micros(&run, "shutdowns.alive_minutes.max"), 30000000);
	assert_int_equal(micros(&run, "shutdowns.invocations_per_download"), 20000000);
	assert_int_equal(num(&run, "shutdowns.reasons.spindown"), 2);
	assert_int_equal(num(&run, "shutdowns.reasons.timeout"), 1);
	run_free(&run);
	/* The EMF form of the same records: the same containers, counted once. */
	run_stats(&run, NULL, 4, "stats", "--json", jsonl, emf);
	assert_int_equal(num(&run, "shutdowns.containers"), 3);
	assert_int_equal(num(&run, "input.duplicate_lifetimes"), 3);
	assert_int_equal(num(&run, "input.ignored"), 0);
	run_free(&run);
	free(jsonl);
	free(emf);
}

/* REPORT lines alone, from more log streams than there are records (found by fuzzing). */
static void test_reports_without_records(void **state)
{
	char *path = path_in(test_dir, "reports.txt");
	struct run run;
	FILE *f = fopen(path, "wb");

	(void)state;
	assert_non_null(f);
	for (int i = 0; i < 6; i++)
		fprintf(f,
			"2026-11-22T09:00:0%d.000000+00:00 2026/11/22/[1]%032d REPORT RequestId: "
			"r-%d\tDuration: 1.00 ms\t%s\n",
			i, i % 5, i, i < 5 ? "Init Duration: 3.00 ms\t" : "");
	assert_int_equal(fclose(f), 0);
	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_int_equal(run.code, 0);
	assert_int_equal(num(&run, "starts"), 0);
	assert_int_equal(num(&run, "invocations.reports"), 6);
	assert_int_equal(num(&run, "invocations.log_streams"), 5);
	assert_int_equal(num(&run, "invocations.init_reports"), 5);
	assert_int_equal(num(&run, "invocations.per_log_stream.max"), 2);
	run_free(&run);
	free(path);
}

static void test_all_inputs_together_and_twice(void **state)
{
	char *a = path_in(data_dir, "records.jsonl");
	char *b = path_in(data_dir, "filter-log-events.json");
	char *c = path_in(data_dir, "logs-tail.txt");
	char *d = path_in(data_dir, "filter-log-events.txt");
	struct run run;

	(void)state;
	run_stats(&run, NULL, 6, "stats", "--json", a, b, c, d);
	assert_core(&run, 19 + 3 + 5 + 2, 3 + 2 + 2 + 1, 4 + 2 + 2 + 1, 12 + 1 + 3 + 1);
	assert_int_equal(num(&run, "invocations.reports"), 5 + 5 + 2);
	assert_int_equal(num(&run, "invocations.log_streams"), 5);
	run_free(&run);

	/*
	 * The same records twice (overlapping exports) are counted once, except
	 * the one without a container id, which nothing tells apart from another.
	 */
	run_stats(&run, NULL, 5, "stats", "--json", a, a, b);
	assert_core(&run, 19 + 1 + 3, 3 + 2, 4 + 2, 12 + 1);
	assert_int_equal(num(&run, "starts_without_container"), 2);
	assert_int_equal(num(&run, "input.duplicates"), 1 + 19 + 1);
	assert_int_equal(num(&run, "input.duplicate_reports"), 1);
	run_free(&run);
	free(a);
	free(b);
	free(c);
	free(d);
}

static void test_stdin(void **state)
{
	char *input = path_in(data_dir, "filter-log-events.json");
	struct run run;

	(void)state;
	run_stats(&run, input, 2, "stats", "--json");
	assert_core(&run, 3, 2, 2, 1);
	run_free(&run);
	run_stats(&run, input, 3, "stats", "--json", "-");
	assert_core(&run, 3, 2, 2, 1);
	run_free(&run);
	free(input);
}

/* Compact exports: one line (`jq -c .`), a bare array (`--query events`), and `jq -c '.events[]'`. */
static void test_export_shapes(void **state)
{
	static const char *const events[] = {
		"{\"logStreamName\":\"2026/11/22/[1]aa\",\"timestamp\":1795334400000,"
		"\"message\":\"{\\\"container\\\":\\\"0123456789abcdef0123456789abcdef\\\","
		"\\\"start\\\":1,\\\"outcome\\\":\\\"download\\\",\\\"bytes\\\":10}\\n\"}",
		"{\"logStreamName\":\"2026/11/22/[1]aa\",\"timestamp\":1795334460000,"
		"\"message\":\"{\\\"container\\\":\\\"0123456789abcdef0123456789abcdef\\\","
		"\\\"start\\\":2,\\\"outcome\\\":\\\"reuse\\\"}\\n\"}",
		"{\"logStreamName\":\"2026/11/22/[1]aa\",\"timestamp\":1795334460001,"
		"\"message\":\"REPORT RequestId: r-1\\tDuration: 1.00 ms\\tInit Duration: 9.00 ms\\n\"}",
	};
	char text[4096];
	char *path = path_in(test_dir, "shape.json");
	struct run run;
	int n;

	(void)state;
	n = snprintf(text, sizeof(text), "{\"events\":[%s,%s,%s]}\n", events[0], events[1],
		     events[2]);
	write_text(path, text, (size_t)n);
	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_core(&run, 2, 1, 1, 1);
	assert_int_equal(num(&run, "invocations.reports"), 1);
	assert_int_equal(num(&run, "invocations.init_reports"), 1);
	/* The records have no ts: the events' timestamps stand in. */
	assert_int_equal(micros(&run, "container_lifetime.minutes.max"), 1000000);
	run_free(&run);

	n = snprintf(text, sizeof(text), "[\n  %s,\n  %s,\n  %s\n]\n", events[0], events[1],
		     events[2]);
	write_text(path, text, (size_t)n);
	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_core(&run, 2, 1, 1, 1);
	assert_int_equal(num(&run, "invocations.log_streams"), 1);
	run_free(&run);

	n = snprintf(text, sizeof(text), "%s\n%s\n%s\n", events[0], events[1], events[2]);
	write_text(path, text, (size_t)n);
	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_core(&run, 2, 1, 1, 1);
	assert_int_equal(num(&run, "invocations.reports"), 1);
	run_free(&run);
	free(path);
}

/* Records written by the real writer, in both formats, read back. */
static void test_round_trip_through_the_writer(void **state)
{
	char *jsonl = path_in(test_dir, "written.jsonl");
	char *emf = path_in(test_dir, "written.emf");
	struct cb_container c = {.first_start_ms = 0, .downloads = 0};
	struct cb_start_record r;
	struct cb_error err;
	struct run run;
	pid_t pid;
	int status = 0;

	(void)state;
	/* Two containers: 1 download + 6 reuses, then 1 error + 1 download + 2 reuses. */
	memset(&r, 0, sizeof(r));
	r.container = &c;
	r.digest = "0123456789abcdef0123456789abcdef";
	cb_error_init(&err);
	for (int k = 1; k <= 11; k++) {
		int second = k > 7;

		snprintf(c.id, sizeof(c.id), "%032d", second ? 2 : 1);
		c.starts = (uint64_t)(second ? k - 7 : k);
		r.ts_ms = 1795334400000LL + (int64_t)k * 30000;
		r.outcome = CB_OUTCOME_REUSE;
		r.error_kind = NULL;
		r.bytes = 0;
		r.total_ms = 1;
		if (c.starts == 1 && !second) {
			r.outcome = CB_OUTCOME_DOWNLOAD;
			r.bytes = 5000;
			r.total_ms = 80;
		} else if (second && c.starts == 1) {
			r.outcome = CB_OUTCOME_ERROR;
			r.error_kind = cb_status_name(CB_E_DOWNLOAD);
		} else if (second && c.starts == 2) {
			r.outcome = CB_OUTCOME_DOWNLOAD;
			r.bytes = 5000;
			r.total_ms = 120;
		}
		assert_int_equal(cb_stats_emit(jsonl, &r, &err), CB_OK);
		/* The EMF goes to stdout: emit from a child whose stdout is the file. */
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			int fd = open(emf, O_WRONLY | O_CREAT | O_APPEND, 0644);

			if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
				_exit(2);
			setenv("AWS_LAMBDA_FUNCTION_NAME", "round-trip", 1);
			setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]abc", 1);
			(void)!write(STDOUT_FILENO, "handler output\nSTART RequestId: x\n", 34);
			_exit(cb_stats_emit(NULL, &r, &err) == CB_OK ? 0 : 1);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}

	run_stats(&run, NULL, 3, "stats", "--json", jsonl);
	assert_core(&run, 11, 2, 2, 8);
	assert_int_equal(num(&run, "errors_by_kind.download"), 1);
	assert_int_equal(num(&run, "bytes_downloaded"), 10000);
	assert_int_equal(num(&run, "download_ms.max"), 120);
	assert_int_equal(num(&run, "container_lifetime.starts.max"), 7);
	assert_int_equal(micros(&run, "container_lifetime.minutes.max"), 3000000);
	run_free(&run);

	run_stats(&run, NULL, 3, "stats", "--json", emf);
	assert_core(&run, 11, 2, 2, 8);
	assert_int_equal(num(&run, "input.ignored"), 22);
	run_free(&run);

	/* Both together describe the same starts. */
	run_stats(&run, NULL, 4, "stats", "--json", jsonl, emf);
	assert_core(&run, 11, 2, 2, 8);
	assert_int_equal(num(&run, "input.duplicates"), 11);
	run_free(&run);
	free(jsonl);
	free(emf);
}

static void test_long_lines_are_skipped(void **state)
{
	static const char record[] =
		"{\"container\":\"0123456789abcdef0123456789abcdef\",\"start\":%d,"
		"\"outcome\":\"%s\"}\n";
	size_t long_len = 200 * 1024;
	char *path = path_in(test_dir, "long.jsonl");
	FILE *f = fopen(path, "wb");
	struct run run;

	(void)state;
	assert_non_null(f);
	fprintf(f, record, 1, "download");
	/* A 200 KiB line that would be a valid record: skipped, counted, not fatal. */
	fputs("{\"container\":\"0123456789abcdef0123456789abcdef\",\"start\":9,"
	      "\"outcome\":\"reuse\",\"pad\":\"",
	      f);
	for (size_t i = 0; i < long_len; i++)
		fputc('x', f);
	fputs("\"}\n", f);
	fprintf(f, record, 2, "reuse");
	/* And a last line without its newline. */
	fprintf(f, "{\"container\":\"0123456789abcdef0123456789abcdef\",\"start\":3,"
		   "\"outcome\":\"reuse\"}");
	assert_int_equal(fclose(f), 0);

	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_core(&run, 3, 1, 1, 2);
	assert_int_equal(num(&run, "input.too_long"), 1);
	run_free(&run);
	free(path);
}

static void test_hostile_and_empty_inputs(void **state)
{
	char *path = path_in(test_dir, "hostile.txt");
	char *deep = malloc(40001);
	struct run run;
	FILE *f;

	(void)state;
	assert_non_null(deep);
	/* 20,000 levels, well under the line cap so it is the depth that is refused. */
	memset(deep, '[', 20000);
	memset(deep + 20000, ']', 20000);
	deep[40000] = '\0';
	f = fopen(path, "wb");
	assert_non_null(f);
	fprintf(f, "{%s}\n", "\"a\":1,");                                 /* bad syntax */
	fprintf(f, "{\"outcome\":\"reuse\",\"container\":\"bad\\q\"}\n"); /* bad escape */
	fprintf(f, "{\"outcome\":\"reuse\",\"container\":\"has space\"}\n");
	fprintf(f, "{\"outcome\":\"reuse\",\"container\":5}\n");
	fprintf(f, "{\"x\":%s}\n", deep); /* nested far too deep */
	fprintf(f, "REPORTRequestId: not-a-report\n");
	fprintf(f, "\x01\x02\xff\xfe binary junk\n");
	fprintf(f, "{\"container\":\"0123456789abcdef0123456789abcdef\",\"start\":1,"
		   "\"outcome\":\"reuse\",\"ts\":\"not a time\"}\n");
	assert_int_equal(fclose(f), 0);
	free(deep);

	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_core(&run, 1, 1, 0, 1);
	assert_int_equal(num(&run, "input.ignored"), 7);
	assert_true(is_null(&run, "period"));
	assert_true(is_null(&run, "container_lifetime.minutes"));
	run_free(&run);

	/* Nothing at all: zeros, and rates that are not numbers rather than 0/0. */
	write_text(path, "", 0);
	run_stats(&run, NULL, 3, "stats", "--json", path);
	assert_int_equal(run.code, 0);
	assert_int_equal(num(&run, "starts"), 0);
	assert_int_equal(num(&run, "containers"), 0);
	assert_true(is_null(&run, "reuse_rate"));
	assert_true(is_null(&run, "redownload_rate"));
	run_free(&run);
	run_stats(&run, NULL, 2, "stats", path);
	assert_int_equal(run.code, 0);
	assert_non_null(strstr(run.out, "starts              0\n"));
	run_free(&run);
	free(path);
}

static void test_record_cap(void **state)
{
	char *input = path_in(data_dir, "records.jsonl");
	struct run run;

	(void)state;
	run_stats(&run, NULL, 5, "stats", "--json", "--max-records", "5", input);
	assert_int_equal(run.code, 3);
	assert_int_equal(run.out_len, 0);
	assert_non_null(strstr(run.err, "more than 5 records"));
	run_free(&run);
	/* The cap counts records as read, duplicates included (records.jsonl has one). */
	run_stats(&run, NULL, 4, "stats", "--json", "--max-records=19", input);
	assert_int_equal(run.code, 3);
	run_free(&run);
	run_stats(&run, NULL, 4, "stats", "--json", "--max-records=20", input);
	assert_core(&run, 19, 3, 4, 12);
	run_free(&run);
	free(input);
}

static void test_command_line(void **state)
{
	char *missing = path_in(test_dir, "no-such-file.jsonl");
	struct run run;

	(void)state;
	run_stats(&run, NULL, 2, "stats", "--bogus");
	assert_int_equal(run.code, 2);
	assert_non_null(strstr(run.err, "--bogus"));
	assert_non_null(strstr(run.err, "usage:"));
	run_free(&run);
	run_stats(&run, NULL, 2, "stats", "--svg");
	assert_int_equal(run.code, 2);
	run_free(&run);
	run_stats(&run, NULL, 3, "stats", "--max-records", "0");
	assert_int_equal(run.code, 2);
	run_free(&run);
	run_stats(&run, NULL, 2, "stats", "--help");
	assert_int_equal(run.code, 0);
	assert_non_null(strstr(run.out, "usage: coldboot stats"));
	run_free(&run);
	run_stats(&run, NULL, 2, "stats", missing);
	assert_int_equal(run.code, 3);
	assert_non_null(strstr(run.err, "no-such-file.jsonl"));
	run_free(&run);
	free(missing);
}

static void test_svg_chart(void **state)
{
	char *input = path_in(data_dir, "records.jsonl");
	char *svg_path = path_in(test_dir, "chart.svg");
	char *svg;
	struct run run;

	(void)state;
	run_stats(&run, NULL, 4, "stats", "--svg", svg_path, input);
	assert_int_equal(run.code, 0);
	run_free(&run);
	svg = slurp(svg_path, NULL);
	assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
	assert_non_null(strstr(svg, "</svg>\n"));
	/* Self-contained: no scripts, no external references, generic fonts only. */
	assert_null(strstr(svg, "<script"));
	assert_null(strstr(svg, "href"));
	assert_null(strstr(svg, "@font-face"));
	/* One row per container with its label, one mark per start (+ the legend). */
	assert_int_equal(count_of(svg, "font-family=\"monospace\""), 3);
	assert_non_null(strstr(svg, ">a1a1a1a1a1a1  10 starts<"));
	assert_int_equal(count_of(svg, "<circle"), 4 + 2); /* 3 downloads + 1 repair */
	assert_int_equal(count_of(svg, "<path"), 2 + 1);   /* 2 errors with a container */
	assert_int_equal(count_of(svg, "stroke-width=\"1.5\""), 12 + 2); /* reuses + waited */
	free(svg);
	free(svg_path);
	free(input);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_jsonl_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outputs_match_expected_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filter_log_events_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logs_tail_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filter_log_events_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifetime_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifetime_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reports_without_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_inputs_together_and_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stdin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_shapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_through_the_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_lines_are_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_and_empty_inputs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_svg_chart, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
