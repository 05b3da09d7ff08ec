/*
 * s3:// support: the pure parts of bootstrap/s3.c, then cb_fetch_to_sink
 * against a real local S3 (tests/servers/s3rver.js, @20minutes/s3rver), with
 * objects put and URLs presigned by the Debian AWS CLI (/usr/bin/aws), so
 * our signing is checked by code we did not write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../bootstrap/fetch.h"
#include "../bootstrap/s3.h"
#include "cbunit.h"
#include "servers/spawn_server.h"

#define AWS_CLI "/usr/bin/aws"
#define TEST_KEY_ID "AKIDCOLDBOOTTEST"
#define TEST_SECRET "cOldBootTestSecret/abc+def"
#define TEMP_KEY_ID "ASIACOLDBOOTTEMP"
#define TEMP_SECRET "tempSecretForColdboot"
#define TEMP_TOKEN "FwoGZXIvYXdzEColdbootSessionToken//+=="
#define BUCKET "cb-test"

/* Keys with what URL encoding gets wrong: spaces, '+', unicode, reserved punctuation. */
#define KEY_PLAIN "bundles/app-1.zip"
#define KEY_UNICODE "dir/\xc3\xbcn\xc3\xaf c\xc3\xb8\x64\xc3\xa9 \xe2\x9c\x93.zip"
#define KEY_SPACE_PLUS "with space+plus.zip"
#define KEY_PUNCT "a=b&c;d,(e)!'*~@$.zip"

static struct cb_test_server s3 = {.pid = -1};
static char scratch[4096];
static char endpoint[64];

/* ---- unit tests of s3.c ---- */

static void test_parse_url(void **state)
{
	char bucket[CB_S3_BUCKET_MAX];
	char key[CB_S3_KEY_MAX + 1];
	struct cb_error err;

	(void)state;
	assert_int_equal(cb_s3_parse_url("s3://my-bucket/a/b c+d.zip", bucket, sizeof(bucket), key,
					 sizeof(key), &err),
			 CB_OK);
	assert_string_equal(bucket, "my-bucket");
	assert_string_equal(key, "a/b c+d.zip");
	/* Taken literally, as the AWS CLI does. */
	assert_int_equal(cb_s3_parse_url("s3://b.with.dots/%41.zip", bucket, sizeof(bucket), key,
					 sizeof(key), &err),
			 CB_OK);
	assert_string_equal(bucket, "b.with.dots");
	assert_string_equal(key, "%41.zip");

	static const char *const bad[] = {
		"s3://",
		"s3://bucket",
		"s3://bucket/",
		"s3:///key",
		"s3://ab/key",
		"s3://-bad/key",
		"s3://bad-/key",
		"s3://has space/key",
		"s3://bucket/dir/",
		"https://bucket/key",
		"s3://a234567890123456789012345678901234567890123456789012345678901234/k",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cb_error_init(&err);
		if (cb_s3_parse_url(bad[i], bucket, sizeof(bucket), key, sizeof(key), &err) !=
		    CB_E_CONFIG)
			fail_msg("accepted %s", bad[i]);
		assert_int_equal(err.code, CB_E_CONFIG);
		assert_true(err.message[0] != '\0');
	}
}

static void test_encode_key(void **state)
{
	char out[256];
	char tiny[4];

	(void)state;
	assert_int_equal(cb_s3_encode_key("a/b c+d.zip", out, sizeof(out)), 0);
	assert_string_equal(out, "a/b%20c%2Bd.zip");
	assert_int_equal(cb_s3_encode_key("AZaz09-._~/", out, sizeof(out)), 0);
	assert_string_equal(out, "AZaz09-._~/");
	assert_int_equal(cb_s3_encode_key("\xc3\xbc\xe2\x9c\x93", out, sizeof(out)), 0);
	assert_string_equal(out, "%C3%BC%E2%9C%93");
	assert_int_equal(cb_s3_encode_key("=&;,()!'*@$%?#", out, sizeof(out)), 0);
	assert_string_equal(out, "%3D%26%3B%2C%28%29%21%27%2A%40%24%25%3F%23");
	assert_int_equal(cb_s3_encode_key("abc", tiny, sizeof(tiny)), 0);
	assert_string_equal(tiny, "abc");
	assert_int_equal(cb_s3_encode_key("abcd", tiny, sizeof(tiny)), -1);
	assert_string_equal(tiny, "");
	assert_int_equal(cb_s3_encode_key("a b", tiny, sizeof(tiny)), -1);
}

static void test_resolve(void **state)
{
	struct cb_s3_env env;
	struct cb_s3_target t;
	struct cb_error err;

	(void)state;
	memset(&env, 0, sizeof(env));
	assert_int_equal(cb_s3_resolve("s3://my-bucket/k ey.zip", &env, &t, &err), CB_OK);
	assert_string_equal(t.region, "us-east-1");
	assert_string_equal(t.sigv4, "aws:amz:us-east-1:s3");
	assert_string_equal(t.url, "https://my-bucket.s3.us-east-1.amazonaws.com/k%20ey.zip");
	assert_int_equal(t.path_style, 0);

	env.default_region = "eu-west-1";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/k", &env, &t, &err), CB_OK);
	assert_string_equal(t.region, "eu-west-1");
	env.region = "ap-south-2";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/k", &env, &t, &err), CB_OK);
	assert_string_equal(t.region, "ap-south-2");
	assert_string_equal(t.url, "https://my-bucket.s3.ap-south-2.amazonaws.com/k");

	/* Dots break the wildcard certificate: path style. */
	assert_int_equal(cb_s3_resolve("s3://my.dotted.bucket/a/b", &env, &t, &err), CB_OK);
	assert_int_equal(t.path_style, 1);
	assert_string_equal(t.url, "https://s3.ap-south-2.amazonaws.com/my.dotted.bucket/a/b");

	env.region = "cn-north-1";
	assert_int_equal(cb_s3_resolve("s3://b-1/k", &env, &t, &err), CB_OK);
	assert_string_equal(t.url, "https://b-1.s3.cn-north-1.amazonaws.com.cn/k");

	/* An endpoint override means path style; the S3-specific one wins. */
	env.region = "eu-central-1";
	env.endpoint_url = "http://127.0.0.1:9000/";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/a+b", &env, &t, &err), CB_OK);
	assert_string_equal(t.url, "http://127.0.0.1:9000/my-bucket/a%2Bb");
	assert_int_equal(t.path_style, 1);
	assert_int_equal(t.custom_endpoint, 1);
	env.endpoint_url_s3 = "https://minio.local:9443";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/a", &env, &t, &err), CB_OK);
	assert_string_equal(t.url, "https://minio.local:9443/my-bucket/a");
	env.endpoint_url_s3 = "";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/a", &env, &t, &err), CB_OK);
	assert_string_equal(t.url, "http://127.0.0.1:9000/my-bucket/a");

	static const char *const bad_endpoints[] = {"ftp://x", "127.0.0.1:9000", "https://",
						    "https://u:p@host", "https://host/?q=1"};
	for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(bad_endpoints[0]); i++) {
		env.endpoint_url_s3 = bad_endpoints[i];
		if (cb_s3_resolve("s3://my-bucket/a", &env, &t, &err) != CB_E_CONFIG)
			fail_msg("accepted endpoint %s", bad_endpoints[i]);
		assert_null(strstr(err.message, "u:p"));
	}
	env.endpoint_url_s3 = NULL;
	env.region = "eu-west-1:evil";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/a", &env, &t, &err), CB_E_CONFIG);
	env.region = "EU-WEST-1";
	assert_int_equal(cb_s3_resolve("s3://my-bucket/a", &env, &t, &err), CB_E_CONFIG);
}

static void test_check_credentials(void **state)
{
	struct cb_s3_env env;
	struct cb_error err;

	(void)state;
	memset(&env, 0, sizeof(env));
	assert_int_equal(cb_s3_check_credentials(&env, &err), CB_E_CONFIG);
	assert_non_null(strstr(err.message, "AWS_ACCESS_KEY_ID"));
	assert_non_null(strstr(err.message, "presigned"));
	env.access_key_id = "AKID";
	env.secret_access_key = "";
	assert_int_equal(cb_s3_check_credentials(&env, &err), CB_E_CONFIG);
	assert_non_null(strstr(err.message, "AWS_SECRET_ACCESS_KEY is not set"));
	env.secret_access_key = "s";
	assert_int_equal(cb_s3_check_credentials(&env, &err), CB_OK);
}

static void test_error_parse(void **state)
{
	static const char body[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>"
		"<Message>The bucket you are attempting to access must be addressed using the "
		"specified endpoint.\nPlease send all future requests to this endpoint.</Message>"
		"<Endpoint>b.s3.eu-west-3.amazonaws.com</Endpoint><Bucket>b</Bucket>"
		"<Region>eu-west-3</Region></Error>";
	struct cb_s3_error_reply reply;
	char advice[256];

	(void)state;
	cb_s3_error_parse(body, sizeof(body) - 1, &reply);
	assert_string_equal(reply.code, "PermanentRedirect");
	assert_null(strchr(reply.message, '\n'));
	assert_non_null(strstr(reply.message, "specified endpoint"));
	assert_string_equal(reply.region, "eu-west-3");
	cb_s3_error_advice(301, &reply, 1, advice, sizeof(advice));
	assert_string_equal(advice, "the bucket is in eu-west-3: set AWS_REGION=eu-west-3");

	/* Cut in the middle of an element: nothing made up. */
	cb_s3_error_parse(body, 60, &reply);
	assert_string_equal(reply.code, "");
	cb_s3_error_parse("not xml at all", 14, &reply);
	assert_string_equal(reply.code, "");
	assert_string_equal(reply.message, "");
	cb_s3_error_parse(NULL, 0, &reply);
	assert_string_equal(reply.region, "");
	/* A region that is not a region name is dropped, not echoed. */
	cb_s3_error_parse("<Region>x; rm -rf</Region>", 26, &reply);
	assert_string_equal(reply.region, "");

	memset(&reply, 0, sizeof(reply));
	strcpy(reply.code, "SignatureDoesNotMatch");
	cb_s3_error_advice(403, &reply, 1, advice, sizeof(advice));
	assert_non_null(strstr(advice, "AWS_SECRET_ACCESS_KEY"));
	cb_s3_error_advice(403, &reply, 0, advice, sizeof(advice));
	assert_non_null(strstr(advice, "presigned"));
	strcpy(reply.code, "AccessDenied");
	cb_s3_error_advice(403, &reply, 1, advice, sizeof(advice));
	assert_non_null(strstr(advice, "s3:GetObject"));
	strcpy(reply.message, "Request has expired");
	cb_s3_error_advice(403, &reply, 0, advice, sizeof(advice));
	assert_non_null(strstr(advice, "make a new one"));
	memset(&reply, 0, sizeof(reply));
	strcpy(reply.code, "AuthorizationHeaderMalformed");
	strcpy(reply.region, "us-west-2");
	cb_s3_error_advice(400, &reply, 1, advice, sizeof(advice));
	assert_string_equal(advice, "the bucket is in us-west-2: set AWS_REGION=us-west-2");
	memset(&reply, 0, sizeof(reply));
	cb_s3_error_advice(400, &reply, 1, advice, sizeof(advice));
	assert_string_equal(advice, "");
}

/* ---- against s3rver ---- */

/* Where text occurs in what the sink holds (which is not NUL-terminated). */
static const unsigned char *mem_find(const struct cb_test_mem_sink *m, const char *text)
{
	size_t n = strlen(text);

	for (size_t i = 0; i + n <= m->size; i++) {
		if (memcmp(m->data + i, text, n) == 0)
			return m->data + i;
	}
	return NULL;
}

struct run {
	enum cb_status status;
	struct cb_fetch_result res;
	struct cb_error err;
	struct cb_test_mem_sink sink;
	int64_t elapsed_ms;
};

static void fetch(struct run *r, const char *url, int64_t budget_ms)
{
	struct cb_sink sink;
	struct cb_fetch_options opts = {.url = url, .deadline_ms = cb_clock_now_ms() + budget_ms};
	int64_t start = cb_clock_now_ms();

	memset(r, 0, sizeof(*r));
	cb_test_mem_sink_attach(&r->sink, &sink);
	cb_error_init(&r->err);
	r->status = cb_fetch_to_sink(&opts, &sink, &r->res, &r->err);
	r->elapsed_ms = cb_clock_now_ms() - start;
	if (r->status != CB_OK)
		fprintf(stderr, "  -> %s\n", r->err.message);
	assert_true(r->elapsed_ms <= budget_ms + 300);
	/* Whatever happened, no secret is in the message. */
	assert_null(strstr(r->err.message, TEST_SECRET));
	assert_null(strstr(r->err.message, TEMP_SECRET));
	assert_null(strstr(r->err.message, TEMP_TOKEN));
	assert_null(strstr(r->err.message, "X-Amz-Signature"));
}

static void use_credentials(const char *id, const char *secret, const char *token)
{
	setenv("AWS_ACCESS_KEY_ID", id, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
	if (token != NULL)
		setenv("AWS_SESSION_TOKEN", token, 1);
	else
		unsetenv("AWS_SESSION_TOKEN");
}

/* The bytes the test put under upload/<key>. */
static void object_bytes(const char *key, unsigned char *out, size_t size)
{
	unsigned seed = 0;

	for (const char *p = key; *p != '\0'; p++)
		seed = seed * 31 + (unsigned char)*p;
	for (size_t i = 0; i < size; i++)
		out[i] = (unsigned char)((seed + i * 7 + (i >> 11)) & 0xff);
}

static size_t object_size(const char *key)
{
	return strcmp(key, KEY_PLAIN) == 0 ? 300000 : 4000 + strlen(key);
}

static void expect_object(const char *key)
{
	char url[2048];
	size_t size = object_size(key);
	unsigned char *want = malloc(size);
	struct run r;

	assert_non_null(want);
	object_bytes(key, want, size);
	snprintf(url, sizeof(url), "s3://" BUCKET "/%s", key);
	fetch(&r, url, 10000);
	assert_int_equal(r.status, CB_OK);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 200);
	assert_int_equal(r.res.bytes, size);
	assert_int_equal(r.sink.size, size);
	assert_memory_equal(r.sink.data, want, size);
	cb_test_mem_sink_free(&r.sink);
	free(want);
}

static void test_signed_get(void **state)
{
	(void)state;
	use_credentials(TEST_KEY_ID, TEST_SECRET, NULL);
	expect_object(KEY_PLAIN);
}

static void test_awkward_keys(void **state)
{
	(void)state;
	use_credentials(TEST_KEY_ID, TEST_SECRET, NULL);
	expect_object(KEY_UNICODE);
	expect_object(KEY_SPACE_PLUS);
	expect_object(KEY_PUNCT);
}

static void test_wrong_secret(void **state)
{
	struct run r;

	(void)state;
	use_credentials(TEST_KEY_ID, "not-the-secret", NULL);
	fetch(&r, "s3://" BUCKET "/" KEY_PLAIN, 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 403);
	assert_int_equal(r.sink.size, 0);
	assert_true(r.elapsed_ms < 2000);
	assert_non_null(strstr(r.err.message, "SignatureDoesNotMatch"));
	assert_non_null(strstr(r.err.message, "check AWS_SECRET_ACCESS_KEY"));
	assert_null(strstr(r.err.message, "not-the-secret"));
	assert_non_null(strstr(r.err.message, "s3://" BUCKET "/" KEY_PLAIN));
	cb_test_mem_sink_free(&r.sink);
}

static void test_unknown_key_id(void **state)
{
	struct run r;

	(void)state;
	use_credentials("AKIDNOBODYKNOWS", TEST_SECRET, NULL);
	fetch(&r, "s3://" BUCKET "/" KEY_PLAIN, 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_non_null(strstr(r.err.message, "InvalidAccessKeyId"));
	assert_non_null(strstr(r.err.message, "check AWS_ACCESS_KEY_ID"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_session_token(void **state)
{
	struct run r;

	(void)state;
	use_credentials(TEMP_KEY_ID, TEMP_SECRET, TEMP_TOKEN);
	expect_object(KEY_PLAIN);

	use_credentials(TEMP_KEY_ID, TEMP_SECRET, NULL);
	fetch(&r, "s3://" BUCKET "/" KEY_PLAIN, 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_non_null(strstr(r.err.message, "InvalidToken"));
	cb_test_mem_sink_free(&r.sink);

	use_credentials(TEMP_KEY_ID, TEMP_SECRET, "AnotherToken");
	fetch(&r, "s3://" BUCKET "/" KEY_PLAIN, 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_non_null(strstr(r.err.message, "AWS_SESSION_TOKEN"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_missing_object_and_bucket(void **state)
{
	struct run r;

	(void)state;
	use_credentials(TEST_KEY_ID, TEST_SECRET, NULL);
	fetch(&r, "s3://" BUCKET "/no/such/key.zip", 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 404);
	assert_true(r.elapsed_ms < 2000);
	assert_non_null(strstr(r.err.message, "NoSuchKey"));
	cb_test_mem_sink_free(&r.sink);

	fetch(&r, "s3://no-such-bucket-here/key.zip", 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_true(r.elapsed_ms < 2000);
	assert_non_null(strstr(r.err.message, "NoSuchBucket"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_missing_credentials(void **state)
{
	struct run r;

	(void)state;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	fetch(&r, "s3://" BUCKET "/" KEY_PLAIN, 10000);
	assert_int_equal(r.status, CB_E_CONFIG);
	assert_int_equal(r.res.attempts, 0);
	assert_non_null(strstr(r.err.message, "AWS_ACCESS_KEY_ID"));
	cb_test_mem_sink_free(&r.sink);
}

/* Runs the AWS CLI with the test's environment; returns its first stdout line in out. */
static int aws_cli(const char *args, char *out, size_t out_size)
{
	char command[8192];
	char line[8192];
	FILE *p;
	int status;

	snprintf(command, sizeof(command), AWS_CLI " --endpoint-url %s %s", endpoint, args);
	p = popen(command, "r");
	if (p == NULL)
		return -1;
	line[0] = '\0';
	if (fgets(line, sizeof(line), p) == NULL)
		line[0] = '\0';
	while (fgets(command, sizeof(command), p) != NULL) {
	}
	status = pclose(p);
	line[strcspn(line, "\r\n")] = '\0';
	if (out != NULL)
		snprintf(out, out_size, "%s", line);
	return status == 0 ? 0 : -1;
}

static void test_presigned(void **state)
{
	char url[4096];
	char tampered[4096];
	char *sig;
	struct run r;

	(void)state;
	use_credentials(TEST_KEY_ID, TEST_SECRET, NULL);
	assert_int_equal(aws_cli("s3 presign s3://" BUCKET "/" KEY_PLAIN " --expires-in 300", url,
				 sizeof(url)),
			 0);
	assert_non_null(strstr(url, "X-Amz-Signature="));
	/* A presigned URL needs no credentials of ours. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	fetch(&r, url, 10000);
	assert_int_equal(r.status, CB_OK);
	assert_int_equal(r.res.bytes, object_size(KEY_PLAIN));
	cb_test_mem_sink_free(&r.sink);

	/* One changed hex digit of the signature. */
	snprintf(tampered, sizeof(tampered), "%s", url);
	sig = strstr(tampered, "X-Amz-Signature=");
	assert_non_null(sig);
	sig += strlen("X-Amz-Signature=");
	*sig = *sig == '0' ? '1' : '0';
	fetch(&r, tampered, 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 403);
	assert_non_null(strstr(r.err.message, "SignatureDoesNotMatch"));
	assert_non_null(strstr(r.err.message, "?<redacted>"));
	cb_test_mem_sink_free(&r.sink);
}

static void test_presigned_expired(void **state)
{
	char url[4096];
	struct timespec wait = {2, 100 * 1000 * 1000};
	struct run r;

	(void)state;
	use_credentials(TEST_KEY_ID, TEST_SECRET, NULL);
	assert_int_equal(aws_cli("s3 presign s3://" BUCKET "/" KEY_PLAIN " --expires-in 1", url,
				 sizeof(url)),
			 0);
	/* X-Amz-Date has whole seconds: after 2.1 s the 1 s lifetime is surely over. */
	nanosleep(&wait, NULL);
	fetch(&r, url, 10000);
	assert_int_equal(r.status, CB_E_DOWNLOAD);
	assert_int_equal(r.res.attempts, 1);
	assert_int_equal(r.res.http_status, 403);
	assert_non_null(strstr(r.err.message, "expired"));
	assert_non_null(strstr(r.err.message, "presign"));
	cb_test_mem_sink_free(&r.sink);
}

/*
 * A body cut in the middle is resumed with Range and If-Match, and s3rver
 * checks the signature of that request too: through a proxy that cuts the
 * first response for each path.
 */
static void test_resume_through_cutting_proxy(void **state)
{
	char server[4096];
	char port[16];
	char proxy_endpoint[64];
	char url[256];
	const char *src = getenv("CB_TEST_SRC");
	const char *const argv[] = {"python3", server,          "--proxy-to", port, "--proxy-cut",
				    "100000",  "--max-seconds", "60",         NULL};
	struct cb_test_server proxy = {.pid = -1};
	size_t size = object_size(KEY_PLAIN);
	unsigned char *want = malloc(size);
	struct run r;

	(void)state;
	assert_non_null(want);
	object_bytes(KEY_PLAIN, want, size);
	snprintf(server, sizeof(server), "%s/servers/fault_server.py", src != NULL ? src : "tests");
	snprintf(port, sizeof(port), "%d", s3.port);
	assert_int_equal(cb_test_server_start(argv, 20000, &proxy), 0);
	snprintf(proxy_endpoint, sizeof(proxy_endpoint), "http://127.0.0.1:%d", proxy.port);
	setenv("AWS_ENDPOINT_URL_S3", proxy_endpoint, 1);
	use_credentials(TEMP_KEY_ID, TEMP_SECRET, TEMP_TOKEN);

	fetch(&r, "s3://" BUCKET "/" KEY_PLAIN, 10000);
	setenv("AWS_ENDPOINT_URL_S3", endpoint, 1);
	assert_int_equal(r.status, CB_OK);
	assert_int_equal(r.res.attempts, 2);
	assert_int_equal(r.res.http_status, 206);
	assert_int_equal(r.sink.size, size);
	assert_memory_equal(r.sink.data, want, size);
	cb_test_mem_sink_free(&r.sink);

	/* What the proxy saw: a whole GET, then a signed ranged one that s3rver accepted. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/__requests/" BUCKET "/" KEY_PLAIN,
		 proxy.port);
	fetch(&r, url, 5000);
	assert_int_equal(r.status, CB_OK);
	assert_non_null(mem_find(&r.sink, "\"range\": \"bytes=100000-\""));
	assert_non_null(mem_find(&r.sink, "\"if_match\": \"\\\""));
	assert_non_null(mem_find(&r.sink, "\"status\": 206"));
	cb_test_mem_sink_free(&r.sink);
	cb_test_server_stop(&proxy);
	free(want);
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int put_objects(void)
{
	static const char *const keys[] = {KEY_PLAIN, KEY_UNICODE, KEY_SPACE_PLUS, KEY_PUNCT};
	char path[8192];
	char args[8192];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t size = object_size(keys[i]);
		unsigned char *data = malloc(size);
		FILE *f;
		char *slash;

		if (data == NULL)
			return -1;
		object_bytes(keys[i], data, size);
		snprintf(path, sizeof(path), "%s/upload/%s", scratch, keys[i]);
		slash = strrchr(path, '/');
		*slash = '\0';
		/* One level of folders is all the keys above use. */
		mkdir(path, 0700);
		*slash = '/';
		f = fopen(path, "wb");
		if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
			free(data);
			return -1;
		}
		free(data);
	}
	/* One CLI run for all keys: each start of the CLI costs most of a second. */
	snprintf(args, sizeof(args),
		 "s3 cp --only-show-errors --recursive '%s/upload' s3://" BUCKET "/", scratch);
	return aws_cli(args, NULL, 0);
}

static int setup_s3(void **state)
{
	char server[4096];
	char dir[4200];
	char config[4200];
	const char *src = getenv("CB_TEST_SRC");
	const char *const argv[] = {"node",
				    server,
				    "--dir",
				    dir,
				    "--key",
				    TEST_KEY_ID ":" TEST_SECRET,
				    "--temp-key",
				    TEMP_KEY_ID ":" TEMP_SECRET ":" TEMP_TOKEN,
				    "--bucket",
				    BUCKET,
				    "--max-seconds",
				    "300",
				    NULL};

	(void)state;
	if (access(AWS_CLI, X_OK) != 0) {
		fprintf(stderr, "%s is missing: apt-get install awscli\n", AWS_CLI);
		return -1;
	}
	if (cb_test_make_dir(scratch, sizeof(scratch), "test_s3") != 0)
		return -1;
	snprintf(dir, sizeof(dir), "%s/objects", scratch);
	snprintf(server, sizeof(server), "%s/servers/s3rver.js", src != NULL ? src : "tests");
	if (mkdir(dir, 0700) != 0)
		return -1;
	snprintf(config, sizeof(config), "%s/upload", scratch);
	if (mkdir(config, 0700) != 0)
		return -1;

	/* Only this test's settings: no ~/.aws, no proxy, path style, SigV4. */
	snprintf(config, sizeof(config), "%s/aws-config", scratch);
	if (write_text(config, "[default]\nregion = eu-central-1\ns3 =\n"
			       "    addressing_style = path\n    signature_version = s3v4\n") != 0)
		return -1;
	setenv("AWS_CONFIG_FILE", config, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
	setenv("AWS_REGION", "eu-central-1", 1);
	unsetenv("AWS_DEFAULT_REGION");
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	use_credentials(TEST_KEY_ID, TEST_SECRET, NULL);

	if (cb_test_server_start(argv, 20000, &s3) != 0)
		return -1;
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", s3.port);
	setenv("AWS_ENDPOINT_URL_S3", endpoint, 1);
	if (put_objects() != 0) {
		fprintf(stderr, "aws s3 cp to %s failed\n", endpoint);
		return -1;
	}
	return 0;
}

/* Stops the server and removes this run's scratch folder (objects, uploads, config). */
static int teardown_s3(void **state)
{
	(void)state;
	cb_test_server_stop(&s3);
	if (scratch[0] != '\0')
		cb_test_remove_tree(scratch);
	return 0;
}

int main(void)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_parse_url),   cmocka_unit_test(test_encode_key),
		cmocka_unit_test(test_resolve),     cmocka_unit_test(test_check_credentials),
		cmocka_unit_test(test_error_parse),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_signed_get),
		cmocka_unit_test(test_awkward_keys),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_unknown_key_id),
		cmocka_unit_test(test_session_token),
		cmocka_unit_test(test_missing_object_and_bucket),
		cmocka_unit_test(test_missing_credentials),
		cmocka_unit_test(test_presigned),
		cmocka_unit_test(test_presigned_expired),
		cmocka_unit_test(test_resume_through_cutting_proxy),
	};
	int failed = cmocka_run_group_tests_name("s3 unit", unit, NULL, NULL);

	failed += cmocka_run_group_tests_name("s3 against s3rver", live, setup_s3, teardown_s3);
	return failed;
}
