/*
 * s3:// URLs: endpoint, addressing style, region, credentials and the meaning
 * of S3's error replies. No network here; see s3.h.
 */
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S3_DEFAULT_REGION "us-east-1"

static const char *env_value(const char *value)
{
	return value != NULL && value[0] != '\0' ? value : NULL;
}

void cb_s3_env_load(struct cb_s3_env *env)
{
	env->access_key_id = getenv("AWS_ACCESS_KEY_ID");
	env->secret_access_key = getenv("AWS_SECRET_ACCESS_KEY");
	env->session_token = getenv("AWS_SESSION_TOKEN");
	env->region = getenv("AWS_REGION");
	env->default_region = getenv("AWS_DEFAULT_REGION");
	env->endpoint_url_s3 = getenv("AWS_ENDPOINT_URL_S3");
	env->endpoint_url = getenv("AWS_ENDPOINT_URL");
}

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static int is_unreserved(unsigned char c)
{
	return is_alnum((char)c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * S3's rules are 3 to 63 of a-z 0-9 . - starting and ending with a letter or
 * digit. Buckets made before 2018 in us-east-1 may also hold upper case and
 * '_', so those are accepted too (and force path style, see below).
 */
static int bucket_name_ok(const char *bucket, size_t len)
{
	if (len < 3 || len >= CB_S3_BUCKET_MAX)
		return 0;
	if (!is_alnum(bucket[0]) || !is_alnum(bucket[len - 1]))
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = bucket[i];
		if (!is_alnum(c) && c != '.' && c != '-' && c != '_')
			return 0;
	}
	return 1;
}

/* A name that cannot be a host label under *.s3.region.amazonaws.com with its wildcard certificate. */
static int bucket_needs_path_style(const char *bucket)
{
	for (const char *p = bucket; *p != '\0'; p++) {
		if (!is_lower_alnum(*p) && *p != '-')
			return 1;
	}
	return 0;
}

enum cb_status cb_s3_parse_url(const char *url, char *bucket, size_t bucket_size, char *key,
			       size_t key_size, struct cb_error *err)
{
	static const char scheme[] = "s3://";
	const char *start;
	const char *slash;
	size_t bucket_len;
	size_t key_len;

	if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
		return cb_error_set(err, CB_E_CONFIG, 0, "not an s3:// URL");
	start = url + sizeof(scheme) - 1;
	slash = strchr(start, '/');
	if (slash == NULL || slash[1] == '\0')
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "an s3:// URL needs a bucket and a key: s3://BUCKET/KEY");
	bucket_len = (size_t)(slash - start);
	if (!bucket_name_ok(start, bucket_len) || bucket_len >= bucket_size)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "bad S3 bucket name in the URL: 3 to 63 letters, digits, '.', '-'");
	key_len = strlen(slash + 1);
	if (key_len > CB_S3_KEY_MAX || key_len >= key_size)
		return cb_error_set(err, CB_E_CONFIG, 0, "the S3 key is longer than %d bytes",
				    CB_S3_KEY_MAX);
	if (slash[key_len] == '/')
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "the S3 key ends with '/': name the bundle's object, not a folder");
	memcpy(bucket, start, bucket_len);
	bucket[bucket_len] = '\0';
	memcpy(key, slash + 1, key_len + 1);
	return CB_OK;
}

int cb_s3_encode_key(const char *key, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	if (out_size == 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
		if (is_unreserved(*p) || *p == '/') {
			if (n + 1 >= out_size)
				goto too_small;
			out[n++] = (char)*p;
		} else {
			if (n + 3 >= out_size)
				goto too_small;
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 0x0f];
		}
	}
	out[n] = '\0';
	return 0;
too_small:
	out[0] = '\0';
	return -1;
}

static int region_ok(const char *region)
{
	size_t len = strlen(region);

	if (len == 0 || len >= CB_S3_REGION_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_lower_alnum(region[i]) && region[i] != '-')
			return 0;
	}
	return 1;
}

/*
 * Copies an endpoint override without its trailing slashes, after checking
 * it is a plain http(s) URL: no credentials, query or fragment, which would
 * end up in messages or confuse the path we append.
 */
static enum cb_status endpoint_copy(const char *name, const char *endpoint, char *out,
				    size_t out_size, struct cb_error *err)
{
	size_t len = strlen(endpoint);
	const char *host;

	if (strncmp(endpoint, "http://", 7) == 0)
		host = endpoint + 7;
	else if (strncmp(endpoint, "https://", 8) == 0)
		host = endpoint + 8;
	else
		return cb_error_set(err, CB_E_CONFIG, 0, "%s must start with http:// or https://",
				    name);
	if (*host == '\0' || *host == '/' || strpbrk(endpoint, "@?# ") != NULL)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "%s must be a plain URL like https://host:port (no user, query or fragment)",
				    name);
	while (len > 0 && endpoint[len - 1] == '/')
		len--;
	if (len >= out_size)
		return cb_error_set(err, CB_E_CONFIG, 0, "%s is too long", name);
	memcpy(out, endpoint, len);
	out[len] = '\0';
	return CB_OK;
}

enum cb_status cb_s3_resolve(const char *url, const struct cb_s3_env *env, struct cb_s3_target *out,
			     struct cb_error *err)
{
	char endpoint[CB_S3_ENDPOINT_MAX];
	char encoded[3 * CB_S3_KEY_MAX + 1];
	const char *region;
	const char *endpoint_name = NULL;
	const char *endpoint_value = NULL;
	const char *domain;
	enum cb_status status;
	int n;

	memset(out, 0, sizeof(*out));
	status = cb_s3_parse_url(url, out->bucket, sizeof(out->bucket), out->key, sizeof(out->key),
				 err);
	if (status != CB_OK)
		goto out;

	region = env_value(env->region);
	if (region == NULL)
		region = env_value(env->default_region);
	if (region == NULL)
		region = S3_DEFAULT_REGION;
	if (!region_ok(region)) {
		status =
			cb_error_set(err, CB_E_CONFIG, 0,
				     "AWS_REGION/AWS_DEFAULT_REGION is not a region name like eu-west-1");
		goto out;
	}
	snprintf(out->region, sizeof(out->region), "%s", region);
	snprintf(out->sigv4, sizeof(out->sigv4), "aws:amz:%s:s3", region);

	if (cb_s3_encode_key(out->key, encoded, sizeof(encoded)) != 0) {
		status = cb_error_set(err, CB_E_CONFIG, 0, "the S3 key is too long");
		goto out;
	}

	if (env_value(env->endpoint_url_s3) != NULL) {
		endpoint_name = "AWS_ENDPOINT_URL_S3";
		endpoint_value = env->endpoint_url_s3;
	} else if (env_value(env->endpoint_url) != NULL) {
		endpoint_name = "AWS_ENDPOINT_URL";
		endpoint_value = env->endpoint_url;
	}

	if (endpoint_value != NULL) {
		/* Local and S3-compatible servers rarely have a DNS name per bucket. */
		status = endpoint_copy(endpoint_name, endpoint_value, endpoint, sizeof(endpoint),
				       err);
		if (status != CB_OK)
			goto out;
		out->custom_endpoint = 1;
		out->path_style = 1;
		n = snprintf(out->url, sizeof(out->url), "%s/%s/%s", endpoint, out->bucket, encoded);
	} else {
		domain = strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
		out->path_style = bucket_needs_path_style(out->bucket);
		if (out->path_style)
			n = snprintf(out->url, sizeof(out->url), "https://s3.%s.%s/%s/%s", region,
				     domain, out->bucket, encoded);
		else
			n = snprintf(out->url, sizeof(out->url), "https://%s.s3.%s.%s/%s",
				     out->bucket, region, domain, encoded);
	}
	if (n < 0 || (size_t)n >= sizeof(out->url)) {
		status = cb_error_set(err, CB_E_CONFIG, 0, "the S3 URL is too long");
		goto out;
	}
	status = CB_OK;
out:
	return status;
}

enum cb_status cb_s3_check_credentials(const struct cb_s3_env *env, struct cb_error *err)
{
	int has_id = env_value(env->access_key_id) != NULL;
	int has_secret = env_value(env->secret_access_key) != NULL;

	if (has_id && has_secret)
		return CB_OK;
	return cb_error_set(err, CB_E_CONFIG, 0,
			    "an s3:// URL needs credentials but %s is not set "
			    "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, plus AWS_SESSION_TOKEN "
			    "for temporary ones, or use a presigned https:// URL)",
			    !has_id && !has_secret ? "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" :
			    !has_id                ? "AWS_ACCESS_KEY_ID" :
						     "AWS_SECRET_ACCESS_KEY");
}

/* memmem, which POSIX does not have. */
static const char *find_bytes(const char *hay, size_t hay_size, const char *needle)
{
	size_t needle_size = strlen(needle);

	if (needle_size == 0 || needle_size > hay_size)
		return NULL;
	for (size_t i = 0; i + needle_size <= hay_size; i++) {
		if (memcmp(hay + i, needle, needle_size) == 0)
			return hay + i;
	}
	return NULL;
}

/* Copies the text of the first <tag>...</tag> into out, control characters made spaces. */
static void xml_element(const char *body, size_t body_size, const char *tag, char *out,
			size_t out_size)
{
	char open[32];
	char close[33];
	const char *start;
	const char *end;
	size_t len;

	out[0] = '\0';
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	start = find_bytes(body, body_size, open);
	if (start == NULL)
		return;
	start += strlen(open);
	end = find_bytes(start, body_size - (size_t)(start - body), close);
	if (end == NULL)
		return;
	len = (size_t)(end - start);
	if (len >= out_size)
		len = out_size - 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)start[i];
		out[i] = (char)(c < 0x20 || c == 0x7f ? ' ' : c);
	}
	out[len] = '\0';
}

void cb_s3_error_parse(const char *body, size_t body_size, struct cb_s3_error_reply *out)
{
	memset(out, 0, sizeof(*out));
	if (body == NULL)
		return;
	xml_element(body, body_size, "Code", out->code, sizeof(out->code));
	xml_element(body, body_size, "Message", out->message, sizeof(out->message));
	xml_element(body, body_size, "Region", out->region, sizeof(out->region));
	if (!region_ok(out->region))
		out->region[0] = '\0';
}

static int code_is(const struct cb_s3_error_reply *reply, const char *code)
{
	return strcmp(reply->code, code) == 0;
}

void cb_s3_error_advice(long http_status, const struct cb_s3_error_reply *reply, int signed_by_us,
			char *out, size_t out_size)
{
	const char *text = "";

	if (code_is(reply, "SignatureDoesNotMatch")) {
		text = signed_by_us ?
			       "check AWS_SECRET_ACCESS_KEY: it does not match AWS_ACCESS_KEY_ID" :
			       "the presigned URL was altered or cut: copy it again whole, or presign it again";
	} else if (code_is(reply, "AccessDenied") && strstr(reply->message, "expired") != NULL) {
		text = signed_by_us ?
			       "the credentials have expired: refresh them" :
			       "the presigned URL has expired: make a new one (aws s3 presign --expires-in SECONDS)";
	} else if (code_is(reply, "AccessDenied") ||
		   (http_status == 403 && reply->code[0] == '\0')) {
		text = signed_by_us ?
			       "the credentials may not read this object: grant s3:GetObject on "
			       "arn:aws:s3:::BUCKET/KEY (without s3:ListBucket a missing key also "
			       "reads as AccessDenied)" :
			       "access denied: the URL's signer may not read this object, or the URL is not "
			       "presigned";
	} else if (code_is(reply, "InvalidAccessKeyId")) {
		text = signed_by_us ?
			       "check AWS_ACCESS_KEY_ID: S3 does not know this key" :
			       "the key that signed this URL no longer exists: presign it again";
	} else if (code_is(reply, "ExpiredToken") || code_is(reply, "TokenRefreshRequired")) {
		text = "the session token has expired: refresh AWS_SESSION_TOKEN with the other credentials";
	} else if (code_is(reply, "InvalidToken")) {
		text = "check AWS_SESSION_TOKEN: it does not belong with AWS_ACCESS_KEY_ID";
	} else if (code_is(reply, "RequestTimeTooSkewed")) {
		text = "this machine's clock is more than 15 minutes off: fix the clock (NTP)";
	} else if (code_is(reply, "NoSuchKey")) {
		text = "no object with this key in the bucket: check the key (keys are case-sensitive)";
	} else if (code_is(reply, "NoSuchBucket")) {
		text = "no such bucket: check the bucket name";
	} else if (code_is(reply, "PermanentRedirect") ||
		   code_is(reply, "AuthorizationHeaderMalformed") ||
		   code_is(reply, "IllegalLocationConstraintException") || http_status == 301) {
		if (reply->region[0] != '\0') {
			snprintf(out, out_size, "the bucket is in %s: set AWS_REGION=%s",
				 reply->region, reply->region);
			return;
		}
		text = "the bucket is in another region: set AWS_REGION to the bucket's region";
	} else if (http_status == 404) {
		text = "not found: check the URL";
	} else if (http_status == 401) {
		text = "the server wants credentials: use a presigned URL or s3://";
	} else if (http_status >= 500) {
		text = "the server failed; try again later";
	}
	snprintf(out, out_size, "%s", text);
}
