/*
 * A tiny HTTP/1.1 client for Lambda's local Runtime and Extensions APIs
 * ($AWS_LAMBDA_RUNTIME_API, "127.0.0.1:9001"). Plain TCP, libc only, so the
 * front binary never loads libcurl for it; fixed buffers, no allocation; one
 * kept-alive connection, reopened once when the server closed it meanwhile.
 */
#ifndef CB_LAMBDA_HTTP_H
#define CB_LAMBDA_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "../cache/cache.h"

#define CB_LAMBDA_HTTP_RAW_BYTES \
	8192u /* bytes received, not yet parsed; one header line must fit */
#define CB_LAMBDA_HTTP_BODY_BYTES 16384u /* response body kept; the rest is read and dropped */
#define CB_LAMBDA_HTTP_VALUE_MAX 256u    /* a wanted header's value */
#define CB_LAMBDA_HTTP_REQUEST_MAX 8192u /* request line, headers and body together */

struct cb_lambda_http {
	int fd;               /* -1 when not connected */
	char host[64];        /* numeric address, without brackets */
	char host_header[80]; /* "host:port" as given, for the Host header */
	unsigned port;
	int family; /* AF_INET or AF_INET6 */
	char raw[CB_LAMBDA_HTTP_RAW_BYTES];
	size_t raw_start; /* raw[raw_start..raw_end) is received and not parsed yet */
	size_t raw_end;
	int eof; /* the server closed its side */
	char body[CB_LAMBDA_HTTP_BODY_BYTES + 1];
};

struct cb_lambda_http_header {
	const char *name;
	const char *value;
};

struct cb_lambda_http_response {
	int status;       /* HTTP status code */
	const char *body; /* NUL-terminated, inside the client's buffer; valid until the next request */
	size_t body_len;    /* bytes kept in body */
	int body_truncated; /* the body was longer than the buffer; the rest was read and dropped */
	char wanted[CB_LAMBDA_HTTP_VALUE_MAX]; /* the value of want_header, "" when absent */
};

/*
 * Prepares a client for api ("host:port", "[v6]:port"; host numeric or
 * "localhost": there is no DNS here, so a static binary needs no NSS).
 * Does not connect yet. Errors: CB_E_CONFIG when api is malformed.
 */
enum cb_status cb_lambda_http_init(struct cb_lambda_http *http, const char *api,
				   struct cb_error *err);

/*
 * Sends one request and reads the whole response. headers (count of them)
 * are added after Host; body may be NULL. want_header names one response
 * header to copy into resp->wanted (case-insensitive), or NULL. timeout_ms
 * bounds the whole exchange; < 0 waits forever (event/next blocks until
 * Lambda has an event). A connection the server closed while idle is
 * reopened once. Errors: CB_E_IO (connect, send, receive, timeout, a
 * malformed response), CB_E_CONFIG (request larger than
 * CB_LAMBDA_HTTP_REQUEST_MAX).
 */
enum cb_status cb_lambda_http_request(struct cb_lambda_http *http, const char *method,
				      const char *path, const struct cb_lambda_http_header *headers,
				      size_t header_count, const char *body, size_t body_len,
				      const char *want_header, int64_t timeout_ms,
				      struct cb_lambda_http_response *resp, struct cb_error *err);

/* Closes the connection; safe to call twice. */
void cb_lambda_http_close(struct cb_lambda_http *http);

#endif
