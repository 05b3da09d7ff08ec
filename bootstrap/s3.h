/*
 * s3:// URLs: where the object lives (endpoint, addressing style, region),
 * which credentials sign the request, and what S3's error replies mean.
 * Pure string work: no network and no libcurl here, so all of it is unit
 * tested; bootstrap/fetch.c turns the result into a signed GET.
 */
#ifndef CB_S3_H
#define CB_S3_H

#include <stddef.h>

#include "../cache/cb_error.h"

#define CB_S3_BUCKET_MAX 64 /* 63 characters and the NUL */
#define CB_S3_KEY_MAX 1024  /* S3's limit on a key, in bytes */
#define CB_S3_REGION_MAX 40
#define CB_S3_ENDPOINT_MAX 512
/* The endpoint, the bucket and a key in which every byte may need "%XX". */
#define CB_S3_URL_MAX (CB_S3_ENDPOINT_MAX + CB_S3_BUCKET_MAX + 3 * CB_S3_KEY_MAX + 64)

/*
 * What the environment says about S3. Every pointer is borrowed (from environ
 * or from the caller) and may be NULL; an empty string counts as unset.
 */
struct cb_s3_env {
	const char *access_key_id;     /* AWS_ACCESS_KEY_ID */
	const char *secret_access_key; /* AWS_SECRET_ACCESS_KEY */
	const char *session_token;     /* AWS_SESSION_TOKEN */
	const char *region;            /* AWS_REGION */
	const char *default_region;    /* AWS_DEFAULT_REGION */
	const char *endpoint_url_s3;   /* AWS_ENDPOINT_URL_S3 */
	const char *endpoint_url;      /* AWS_ENDPOINT_URL */
};

/* Fills env from the process environment (getenv); the pointers stay valid until setenv. */
void cb_s3_env_load(struct cb_s3_env *env);

/* Where one object is and how to ask for it. Holds no secret. */
struct cb_s3_target {
	char bucket[CB_S3_BUCKET_MAX];
	char key[CB_S3_KEY_MAX + 1]; /* as given, not encoded */
	char region[CB_S3_REGION_MAX];
	char sigv4[CB_S3_REGION_MAX + 16]; /* "aws:amz:<region>:s3" for CURLOPT_AWS_SIGV4 */
	char url[CB_S3_URL_MAX];           /* the http(s) URL to GET, key percent-encoded */
	int path_style;                    /* 1: <endpoint>/<bucket>/<key>; 0: virtual-hosted */
	int custom_endpoint;               /* 1: AWS_ENDPOINT_URL(_S3) was used */
};

/*
 * Splits "s3://bucket/key" into bucket and key. The key is taken literally
 * (as the AWS CLI does: no percent-decoding), so "s3://b/a b+c.zip" names the
 * key "a b+c.zip". Errors: CB_E_CONFIG (not s3://, bad bucket name, empty or
 * too long key).
 */
enum cb_status cb_s3_parse_url(const char *url, char *bucket, size_t bucket_size, char *key,
			       size_t key_size, struct cb_error *err);

/*
 * Percent-encodes key for a URL path: every byte except A-Z a-z 0-9 - . _ ~
 * and '/' becomes "%XX" (upper-case hex), which is also the form SigV4
 * signs. Returns 0, or -1 when out_size is too small (out is then "").
 */
int cb_s3_encode_key(const char *key, char *out, size_t out_size);

/*
 * Resolves an s3:// URL against env: region from AWS_REGION, else
 * AWS_DEFAULT_REGION, else us-east-1; URL virtual-hosted on AWS
 * (https://bucket.s3.region.amazonaws.com/key), path style when an endpoint
 * override is set or the bucket name does not fit in a TLS wildcard name
 * (dots, upper case, underscores). Does not look at credentials.
 * Errors: CB_E_CONFIG (bad URL, bad region, bad endpoint).
 */
enum cb_status cb_s3_resolve(const char *url, const struct cb_s3_env *env, struct cb_s3_target *out,
			     struct cb_error *err);

/*
 * Checks that env holds an access key id and a secret (a session token is
 * optional). Errors: CB_E_CONFIG saying which variable is missing.
 */
enum cb_status cb_s3_check_credentials(const struct cb_s3_env *env, struct cb_error *err);

/* The parts of an S3 error reply that explain it. */
struct cb_s3_error_reply {
	char code[64];                 /* <Code>, e.g. "NoSuchKey"; "" when absent */
	char message[192];             /* <Message>, control characters replaced by spaces */
	char region[CB_S3_REGION_MAX]; /* <Region>, or x-amz-bucket-region when given */
};

/*
 * Extracts Code, Message and Region from the first body_size bytes of an
 * S3 XML error body (which need not be NUL-terminated). Never fails: what is
 * missing stays "". Entities (&amp; ...) are left as they are.
 */
void cb_s3_error_parse(const char *body, size_t body_size, struct cb_s3_error_reply *out);

/*
 * One sentence telling the user what to do about an HTTP error from S3,
 * e.g. "check AWS_SECRET_ACCESS_KEY: the signature does not match".
 * signed_by_us is 1 for an s3:// URL (we signed it with the environment's
 * credentials) and 0 for an https:// URL (presigned or public). Writes ""
 * when there is nothing specific to say.
 */
void cb_s3_error_advice(long http_status, const struct cb_s3_error_reply *reply, int signed_by_us,
			char *out, size_t out_size);

#endif
