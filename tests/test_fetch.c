/*
 * cb_fetch_to_sink against real local servers: tests/servers/fault_server.py
 * (started once for the whole run, on 127.0.0.1) and files for file://.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "../bootstrap/fetch.h"
#include "cbunit.h"
#include "servers/spawn_server.h"

static struct cb_test_server fault_server = {.pid = -1};
static char scratch_dir[4096];

/* The fault server's gen/<SIZE> body: byte i is (i * 131 + (i >> 9)) & 0xff. */
static int is_pattern(const unsigned char *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (data[i] != (unsigned char)((i * 131 + (i >> 9)) & 0xff))
			return 0;
	}
	return 1;
}

/* ---- running one fetch ---- */

struct run {
	enum cb_status status;
	struct cb_fetch_result res;
	struct cb_error err;
	struct cb_test_mem_sink sink;
	int64_t elapsed_ms;
	int64_t deadline_budget_ms;
};

static void fetch_url(struct run *r, const char *url, int64_t budget_ms, uint64_t max_bytes,
		      long low_speed_time_s)
{
	struct cb_sink sink;
	struct cb_fetch_options opts = {
		.url = url,
		.deadline_ms = cb_clock_now_ms() + budget_ms,
		.max_bytes = max_bytes,
		.connect_timeout_ms = 2000,
		.low_speed_bytes_per_s = 1024,
		.low_speed_time_s = low_speed_time_s,
	};
	int64_t start = cb_clock_now_ms();

	cb_test_mem_sink_attach(&r->sink, &sink);
	cb_error_init(&r->err);
	r->deadline_budget_ms = budget_ms;
	r->status = cb_fetch_to_sink(&opts, &sink, &r->res, &r->err);
	r->elapsed_ms = cb_clock_now_ms() - start;
	if (r->status != CB_OK)
		fprintf(stderr, "  -> %s\n", r->err.message);
	/* Every run, failed or not, ends within its deadline (with a little slack for teardown). */
	assert_true(r->elapsed_ms <= budget_ms + 300);
}

static void fault_url(char *out, size_t out_size, const char *path)
{
	snprintf(out, out_size, "http://127.0.0.1:%d%s", fault_server.port, path);
}

static void fetch_path(struct run *r, const char *path, int64_t budget_ms, uint64_t max_bytes,
		       long low_speed_time_s)
{
	char url[700];

	fault_url(url, sizeof(url), path);
	fetch_url(r, url, budget_ms, max_bytes, low_speed_time_s);
}

/* The requests the fault server saw for path, as its JSON lines. */
static void server_requests(const char *path, char *out, size_t out_size)
{
	struct run r;
	char log_path[600];

	memset(&r, 0, sizeof(r));
	snprintf(log_path, sizeof(log_path), "/__requests%s", path);
	fetch_path(&r, log_path, 5000, 0, 0);
	assert_int_equal(r.status, CB_OK);
	assert_true(r.sink.size < out_size);
	memcpy(out, r.sink.data, r.sink.size);
	out[r.sink.size] = '\0';
	cb_test_mem_sink_free(&r.sink);
}

static size_t count_lines(const char *text)
{
	size_t n = 0;

	for (; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

static void expect_body(struct run *r, size_t size)
{
	assert_int_equal(r->status, CB_OK);
	/* A success after failed attempts leaves no error behind for the caller to trip on. */
	assert_int_equal(r->err.code, CB_OK);
	assert_string_equal(r->err.message, "");
	assert_int_equal(r->sink.size, size);
	assert_int_equal(r->res.bytes, size);
	assert_true(is_pattern(r->sink.data, r->sink.size));
}

/* ---- plain downloads ---- */

static void test_http_ok(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/gen/300000", 10000, 0, 0);
	expect_body(&r, 300000);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 200);
	assert_int_equal(r.sink.restarts, 0);
	cb_test_mem_sink_free(&r.sink);
}

static void test_empty_body(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/gen/0", 5000, 0, 0);
	assert_int_equal(r.status, CB_OK);
	assert_int_equal(r.res.bytes, 0);
	assert_int_equal(r.res.http_status, 200);
	cb_test_mem_sink_free(&r.sink);
}

static void test_404_is_download_error(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/always404/gen/10", 10000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.err.code, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 404);
	assert_int_equal(r.sink.size, 0); /* the error body never reaches the sink */
	assert_non_null(strstr(r.err.message, "HTTP 404"));
	assert_true(r.elapsed_ms < 2000);
	cb_test_mem_sink_free(&r.sink);
}

static void test_no_retry_for_client_errors(void **state)
{
	static const char *const paths[] = {"/always400/gen/10", "/always401/gen/10",
					    "/always403/gen/10"};
	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct run r = {0};
		fetch_path(&r, paths[i], 10000, 0, 0);
		assert_int_equal(r.status, CB_E_DOWNLOAD);
		assert_int_equal(r.res.attempts, 1);
		assert_true(r.elapsed_ms < 2000);
		cb_test_mem_sink_free(&r.sink);
	}
}

static void test_redirects(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/id/redir3/redirect/3/gen/5000", 10000, 0, 0);
	expect_body(&r, 5000);
	cb_test_mem_sink_free(&r.sink);

	memset(&r, 0, sizeof(r));
	fetch_path(&r, "/id/redir6/redirect/6/gen/5000", 10000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_non_null(strstr(r.err.message, "redirects"));
	assert_int_equal(r.sink.size, 0);
	cb_test_mem_sink_free(&r.sink);
}

static void test_redirect_to_file_refused(void **state)
{
	static const char *const paths[] = {"/redirect-file/gen/10", "/redirect-ftp/gen/10"};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct run r = {0};
		fetch_path(&r, paths[i], 10000, 0, 0);
		assert_int_equal(r.status, CB_E_DOWNLOAD);
		assert_int_equal(r.sink.size, 0);
		assert_int_equal(r.res.attempts, 1);
		assert_non_null(strstr(r.err.message, "redirect"));
		cb_test_mem_sink_free(&r.sink);
	}
}

static void test_size_cap(void **state)
{
	struct run r = {0};

	(void)state;
	/* Content-Length says too much: refused before any byte reaches the sink. */
	fetch_path(&r, "/gen/5000", 10000, 4999, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.sink.size, 0);
	assert_non_null(strstr(r.err.message, "4999"));
	cb_test_mem_sink_free(&r.sink);

	/* Exactly at the cap is fine. */
	memset(&r, 0, sizeof(r));
	fetch_path(&r, "/gen/5000", 10000, 5000, 0);
	expect_body(&r, 5000);
	cb_test_mem_sink_free(&r.sink);

	/* No Content-Length: the bytes are counted. */
	memset(&r, 0, sizeof(r));
	fetch_path(&r, "/close-delimited-truncated/gen/100000", 10000, 20000, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_true(r.sink.size <= 20000);
	cb_test_mem_sink_free(&r.sink);

	/* A huge announced length is refused at once. */
	memset(&r, 0, sizeof(r));
	fetch_path(&r, "/huge-length/gen/100000", 10000, 1u << 30, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.sink.size, 0);
	assert_int_equal(r.res.attempts, 1);
	cb_test_mem_sink_free(&r.sink);
}

static void test_file_url(void **state)
{
	char path[4200];
	char url[4300];
	unsigned char data[70000];
	struct run r = {0};
	FILE *f;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)((i * 131 + (i >> 9)) & 0xff);
	snprintf(path, sizeof(path), "%s/body.bin", scratch_dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, sizeof(data), f), sizeof(data));
	assert_int_equal(fclose(f), 0);
	snprintf(url, sizeof(url), "file://%s", path);

	fetch_url(&r, url, 5000, 0, 0);
	expect_body(&r, sizeof(data));
	assert_int_equal(r.res.http_status, 0);
	cb_test_mem_sink_free(&r.sink);

	memset(&r, 0, sizeof(r));
	fetch_url(&r, url, 5000, 1000, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_true(r.sink.size <= 1000);
	cb_test_mem_sink_free(&r.sink);

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "file://%s/missing.zip", scratch_dir);
	fetch_url(&r, url, 5000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	cb_test_mem_sink_free(&r.sink);
}

static void test_bad_urls(void **state)
{
	static const char *const urls[] = {"ftp://127.0.0.1/x.zip", "gopher://x/y", "/tmp/x.zip",
					   ""};

	(void)state;
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		struct run r = {0};
		fetch_url(&r, urls[i], 5000, 0, 0);
		assert_int_equal(r.status, CB_E_CONFIG);
		assert_int_equal(r.res.attempts, 0);
		cb_test_mem_sink_free(&r.sink);
	}
}

static void test_secrets_never_in_messages(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r,
		   "/always403/gen/10?X-Amz-Credential=AKIDSECRET%2F20260101&X-Amz-Signature=deadbeefsig",
		   5000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_null(strstr(r.err.message, "AKIDSECRET"));
	assert_null(strstr(r.err.message, "deadbeefsig"));
	assert_null(strstr(r.err.message, "X-Amz"));
	assert_non_null(strstr(r.err.message, "/always403/gen/10"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_sink_error_propagates(void **state)
{
	struct run r = {0};

	(void)state;
	r.sink.fail_after = 10000;
	fetch_path(&r, "/gen/100000", 5000, 0, 0);
	assert_int_equal(r.status, CB_E_SPACE);
	assert_int_equal(r.err.code, CB_E_SPACE);
	assert_int_equal(r.res.attempts, 1);
	cb_test_mem_sink_free(&r.sink);
}

static void test_connection_refused(void **state)
{
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	char url[128];
	struct run r = {0};
	int fd;

	(void)state;
	/* A port that was just free: bound, then closed without listening. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x.zip", ntohs(addr.sin_port));

	fetch_url(&r, url, 10000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 3);
	assert_true(r.elapsed_ms < 3000);
	cb_test_mem_sink_free(&r.sink);
}

/* TLS is always verified: a self-signed certificate is refused, at once and for good. */
static void test_untrusted_tls_refused(void **state)
{
	char server_path[4096];
	char url[128];
	const char *src = getenv("CB_TEST_SRC");
	const char *const argv[] = {"python3",       server_path, "--tls-self-signed",
				    "--max-seconds", "60",        NULL};
	struct cb_test_server tls = {.pid = -1};
	struct run r = {0};

	(void)state;
	snprintf(server_path, sizeof(server_path), "%s/servers/fault_server.py",
		 src != NULL ? src : "tests");
	assert_int_equal(cb_test_server_start(argv, 30000, &tls), 0);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/gen/1000", tls.port);
	fetch_url(&r, url, 10000, 0, 0);
	cb_test_server_stop(&tls);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.sink.size, 0);
	assert_non_null(strstr(r.err.message, "TLS certificate is not trusted"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_deadline_already_passed(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/gen/10", -1, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 0);
	cb_test_mem_sink_free(&r.sink);
}

/* ---- faults ---- */

static void test_cut_resumes(void **state)
{
	char log[4096];
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/cut/70000/gen/200000", 10000, 0, 0);
	expect_body(&r, 200000);
	assert_int_equal(r.res.attempts, 2);
	assert_int_equal(r.res.http_status, 206);
	assert_int_equal(r.sink.restarts, 0);
	server_requests("/cut/70000/gen/200000", log, sizeof(log));
	assert_int_equal(count_lines(log), 2);
	assert_non_null(strstr(log, "\"range\": \"bytes=70000-\""));
	assert_non_null(strstr(log, "\"if_match\": \"\\\""));
	cb_test_mem_sink_free(&r.sink);
}

static void test_cut_every_response(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/cutevery/30000/gen/100000", 15000, 0, 0);
	expect_body(&r, 100000);
	assert_int_equal(r.res.attempts, 4);
	assert_int_equal(r.sink.restarts, 0);
	cb_test_mem_sink_free(&r.sink);
}

static void test_reset_resumes(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/rst/50000/gen/400000", 10000, 0, 0);
	expect_body(&r, 400000);
	assert_int_equal(r.res.attempts, 2);
	cb_test_mem_sink_free(&r.sink);
}

static void test_503_twice_then_ok(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/503x2/gen/10000", 10000, 0, 0);
	expect_body(&r, 10000);
	assert_int_equal(r.res.attempts, 3);
	cb_test_mem_sink_free(&r.sink);

	memset(&r, 0, sizeof(r));
	fetch_path(&r, "/429x1/gen/1000", 10000, 0, 0);
	expect_body(&r, 1000);
	assert_int_equal(r.res.attempts, 2);
	cb_test_mem_sink_free(&r.sink);
}

static void test_always_500_gives_up(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/always500/gen/10", 3000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_true(r.res.attempts >= 2);
	assert_true(r.res.attempts <= 8);
	assert_int_equal(r.sink.size, 0);
	assert_non_null(strstr(r.err.message, "HTTP 500"));
	assert_non_null(strstr(r.err.message, "gave up after"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_retry_after(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/retryafter/1/gen/1000", 10000, 0, 0);
	expect_body(&r, 1000);
	assert_int_equal(r.res.attempts, 2);
	assert_true(r.elapsed_ms >= 1000);
	cb_test_mem_sink_free(&r.sink);

	/* Asked to come back after the deadline: give up now rather than sleep in vain. */
	memset(&r, 0, sizeof(r));
	fetch_path(&r, "/retryafter/30/gen/1000", 3000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_true(r.elapsed_ms < 1000);
	assert_non_null(strstr(r.err.message, "retry after 30 s"));
	cb_test_mem_sink_free(&r.sink);
}

/*
 * A close-delimited body that stops early looks whole to HTTP: nothing in
 * the protocol tells. Only the pinned checksum downstream catches it, so here
 * the fetch succeeds with half the bytes.
 */
static void test_close_delimited_truncation_is_invisible(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/close-delimited-truncated/gen/100000", 5000, 0, 0);
	expect_body(&r, 50000);
	cb_test_mem_sink_free(&r.sink);
}

static void test_stall_after_headers(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/stall-after-headers/gen/100000", 4000, 0, 1);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_true(r.res.attempts >= 2);
	assert_int_equal(r.sink.size, 0);
	cb_test_mem_sink_free(&r.sink);
}

static void test_stall_once_resumes(void **state)
{
	struct run r = {0};

	(void)state;
	/* curl averages the speed over about 5 s, so the burst before the stall hides it that long. */
	fetch_path(&r, "/stall-once/40000/gen/100000", 15000, 0, 1);
	expect_body(&r, 100000);
	assert_int_equal(r.res.attempts, 2);
	assert_int_equal(r.sink.restarts, 0);
	cb_test_mem_sink_free(&r.sink);
}

/* Resumes that do not continue the same body start again from byte 0. */
static void test_restart_cases(void **state)
{
	static const char *const paths[] = {
		"/ignore-range/cut/30000/gen/100000", /* 200 instead of 206 */
		"/etag-changes/cut/30000/gen/100000", /* 206 with another ETag, If-Match ignored */
		"/if-match-412/cut/30000/gen/100000", /* If-Match honoured: 412 */
		"/bad-range/cut/30000/gen/100000",    /* 206 from byte 0 */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct run r = {0};
		fprintf(stderr, "  %s\n", paths[i]);
		fetch_path(&r, paths[i], 10000, 0, 0);
		expect_body(&r, 100000);
		assert_int_equal(r.sink.restarts, 1);
		assert_true(r.res.attempts >= 2 && r.res.attempts <= 3);
		cb_test_mem_sink_free(&r.sink);
	}
}

/* Without a strong ETag nothing proves the rest belongs to the same body: restart. */
static void test_no_etag_restarts(void **state)
{
	static const char *const paths[] = {"/no-etag/cut/30000/gen/100000",
					    "/weak-etag/cut/30000/gen/100000"};
	char log[4096];

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct run r = {0};
		fetch_path(&r, paths[i], 10000, 0, 0);
		expect_body(&r, 100000);
		assert_int_equal(r.sink.restarts, 1);
		assert_int_equal(r.res.attempts, 2);
		server_requests(paths[i], log, sizeof(log));
		assert_null(strstr(log, "bytes="));
		cb_test_mem_sink_free(&r.sink);
	}
}

static void test_short_body_gives_up(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/short/gen/100000", 6000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_true(r.res.attempts >= 2);
	assert_true(r.sink.size <= 50000);
	cb_test_mem_sink_free(&r.sink);
}

static void test_big_error_body(void **state)
{
	struct run r = {0};

	(void)state;
	fetch_path(&r, "/big-error/404/gen/10", 5000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.sink.size, 0);
	assert_true(strlen(r.err.message) < 400);
	cb_test_mem_sink_free(&r.sink);
}

/* ---- S3-style error replies (from a presigned or public https:// URL) ---- */

static void expect_advice(const char *path, long http_status, const char *want)
{
	struct run r = {0};

	fetch_path(&r, path, 5000, 0, 0);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, http_status);
	if (strstr(r.err.message, want) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", r.err.message, want);
	assert_null(strchr(r.err.message, '\n'));
	cb_test_mem_sink_free(&r.sink);
}

static void test_s3_error_advice(void **state)
{
	(void)state;
	expect_advice("/s3err/403/SignatureDoesNotMatch/gen/1", 403, "presigned URL was altered");
	expect_advice("/s3err/403/AccessDenied/gen/1", 403, "AccessDenied");
	expect_advice("/expired/gen/1", 403, "make a new one");
	expect_advice("/s3err/403/RequestTimeTooSkewed/gen/1", 403, "clock");
	expect_advice("/s3err/404/NoSuchKey/gen/1", 404, "check the key");
	expect_advice("/s3err/404/NoSuchBucket/gen/1", 404, "check the bucket name");
	expect_advice("/s3err/301/PermanentRedirect/gen/1", 301, "set AWS_REGION=eu-west-2");
}

static int setup(void **state)
{
	char server_path[4096];
	const char *src = getenv("CB_TEST_SRC");
	const char *const argv[] = {"python3", server_path, "--max-seconds", "120", NULL};

	(void)state;
	snprintf(server_path, sizeof(server_path), "%s/servers/fault_server.py",
		 src != NULL ? src : "tests");
	if (cb_test_make_dir(scratch_dir, sizeof(scratch_dir), "test_fetch") != 0)
		return -1;
	return cb_test_server_start(argv, 20000, &fault_server);
}

static int teardown(void **state)
{
	(void)state;
	cb_test_server_stop(&fault_server);
	cb_test_remove_tree(scratch_dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_ok),
		cmocka_unit_test(test_empty_body),
		cmocka_unit_test(test_404_is_download_error),
		cmocka_unit_test(test_no_retry_for_client_errors),
		cmocka_unit_test(test_redirects),
		cmocka_unit_test(test_redirect_to_file_refused),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_file_url),
		cmocka_unit_test(test_bad_urls),
		cmocka_unit_test(test_secrets_never_in_messages),
		cmocka_unit_test(test_sink_error_propagates),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_untrusted_tls_refused),
		cmocka_unit_test(test_deadline_already_passed),
		cmocka_unit_test(test_cut_resumes),
		cmocka_unit_test(test_cut_every_response),
		cmocka_unit_test(test_reset_resumes),
		cmocka_unit_test(test_503_twice_then_ok),
		cmocka_unit_test(test_always_500_gives_up),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_close_delimited_truncation_is_invisible),
		cmocka_unit_test(test_stall_after_headers),
		cmocka_unit_test(test_stall_once_resumes),
		cmocka_unit_test(test_restart_cases),
		cmocka_unit_test(test_no_etag_restarts),
		cmocka_unit_test(test_short_body_gives_up),
		cmocka_unit_test(test_big_error_body),
		cmocka_unit_test(test_s3_error_advice),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
