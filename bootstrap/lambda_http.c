/*
 * HTTP/1.1 over one plain TCP socket, for the Lambda APIs on 127.0.0.1.
 *
 * Just enough of the protocol for a server that is local and cooperative but
 * not ours: Content-Length and chunked bodies, a body of unknown length that
 * ends when the server closes, keep-alive with one reconnect when an idle
 * connection was closed by the other side. Every read is bounded by the
 * buffers and, unless the caller asks to wait forever, by a deadline.
 */
#include "lambda_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum cb_status cb_lambda_http_init(struct cb_lambda_http *http, const char *api,
				   struct cb_error *err)
{
	const char *host = api;
	size_t host_len;
	const char *port_text;
	unsigned char addr[sizeof(struct in6_addr)];
	char *end;
	unsigned long port;

	memset(http, 0, sizeof(*http));
	http->fd = -1;
	if (api == NULL || api[0] == '\0')
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "AWS_LAMBDA_RUNTIME_API is not set: not running inside Lambda "
				    "(or a local emulator)");
	if (api[0] == '[') {
		const char *close = strchr(api, ']');

		if (close == NULL || close[1] != ':')
			goto malformed;
		host = api + 1;
		host_len = (size_t)(close - host);
		port_text = close + 2;
	} else {
		const char *colon = strrchr(api, ':');

		if (colon == NULL)
			goto malformed;
		host_len = (size_t)(colon - api);
		port_text = colon + 1;
	}
	if (host_len == 0 || host_len >= sizeof(http->host) ||
	    strlen(api) >= sizeof(http->host_header))
		goto malformed;
	memcpy(http->host, host, host_len);
	http->host[host_len] = '\0';
	if (strcmp(http->host, "localhost") == 0)
		strcpy(http->host, "127.0.0.1");
	errno = 0;
	port = strtoul(port_text, &end, 10);
	if (errno != 0 || end == port_text || *end != '\0' || port == 0 || port > 65535)
		goto malformed;
	http->port = (unsigned)port;
	if (inet_pton(AF_INET, http->host, addr) == 1)
		http->family = AF_INET;
	else if (inet_pton(AF_INET6, http->host, addr) == 1)
		http->family = AF_INET6;
	else
		goto malformed;
	strcpy(http->host_header, api);
	return CB_OK;
malformed:
	return cb_error_set(err, CB_E_CONFIG, 0,
			    "AWS_LAMBDA_RUNTIME_API \"%.100s\" is not host:port with a numeric host",
			    api);
}

void cb_lambda_http_close(struct cb_lambda_http *http)
{
	if (http->fd >= 0)
		close(http->fd);
	http->fd = -1;
	http->raw_start = http->raw_end = 0;
	http->eof = 0;
}

static enum cb_status connect_now(struct cb_lambda_http *http, struct cb_error *err)
{
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
	const struct sockaddr *sa;
	socklen_t sa_len;
	int one = 1;
	int rc;

	memset(&in4, 0, sizeof(in4));
	memset(&in6, 0, sizeof(in6));
	if (http->family == AF_INET6) {
		in6.sin6_family = AF_INET6;
		in6.sin6_port = htons((uint16_t)http->port);
		inet_pton(AF_INET6, http->host, &in6.sin6_addr);
		sa = (const struct sockaddr *)&in6;
		sa_len = sizeof(in6);
	} else {
		in4.sin_family = AF_INET;
		in4.sin_port = htons((uint16_t)http->port);
		inet_pton(AF_INET, http->host, &in4.sin_addr);
		sa = (const struct sockaddr *)&in4;
		sa_len = sizeof(in4);
	}
	http->fd = socket(http->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (http->fd < 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot open a socket: %s",
				    strerror(errno));
	/* Requests go out in one send; do not let Nagle hold back the next one. */
	(void)setsockopt(http->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	do {
		rc = connect(http->fd, sa, sa_len);
	} while (rc != 0 && errno == EINTR);
	if (rc != 0) {
		int e = errno;

		cb_lambda_http_close(http);
		return cb_error_set(err, CB_E_IO, e, "cannot connect to the Lambda API at %s: %s",
				    http->host_header, strerror(e));
	}
	http->raw_start = http->raw_end = 0;
	http->eof = 0;
	return CB_OK;
}

/* Waits until fd is ready for events; deadline_ms < 0 waits forever. */
static enum cb_status wait_ready(struct cb_lambda_http *http, short events, int64_t deadline_ms,
				 struct cb_error *err)
{
	for (;;) {
		struct pollfd pfd = {.fd = http->fd, .events = events, .revents = 0};
		int wait_ms = -1;
		int rc;

		if (deadline_ms >= 0) {
			int64_t left = deadline_ms - cb_clock_now_ms();

			if (left <= 0)
				return cb_error_set(err, CB_E_IO, ETIMEDOUT,
						    "the Lambda API at %s did not answer in time",
						    http->host_header);
			wait_ms = left > 60000 ? 60000 : (int)left;
		}
		rc = poll(&pfd, 1, wait_ms);
		if (rc > 0)
			return CB_OK;
		if (rc < 0 && errno != EINTR)
			return cb_error_set(err, CB_E_IO, errno, "poll failed: %s", strerror(errno));
	}
}

static enum cb_status send_all(struct cb_lambda_http *http, const char *data, size_t len,
			       int64_t deadline_ms, struct cb_error *err)
{
	while (len > 0) {
		enum cb_status status = wait_ready(http, POLLOUT, deadline_ms, err);
		ssize_t n;

		if (status != CB_OK)
			return status;
		n = send(http->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return cb_error_set(err, CB_E_IO, errno,
					    "cannot send to the Lambda API at %s: %s",
					    http->host_header, strerror(errno));
		data += n;
		len -= (size_t)n;
	}
	return CB_OK;
}

/* Receives more bytes into raw; sets eof when the server closed. */
static enum cb_status fill(struct cb_lambda_http *http, int64_t deadline_ms, struct cb_error *err)
{
	enum cb_status status;
	ssize_t n;

	if (http->raw_start == http->raw_end) {
		http->raw_start = http->raw_end = 0;
	} else if (http->raw_end == sizeof(http->raw)) {
		if (http->raw_start == 0)
			return cb_error_set(err, CB_E_IO, 0,
					    "the Lambda API sent a header line longer than %u bytes",
					    CB_LAMBDA_HTTP_RAW_BYTES);
		memmove(http->raw, http->raw + http->raw_start, http->raw_end - http->raw_start);
		http->raw_end -= http->raw_start;
		http->raw_start = 0;
	}
	for (;;) {
		status = wait_ready(http, POLLIN, deadline_ms, err);
		if (status != CB_OK)
			return status;
		n = recv(http->fd, http->raw + http->raw_end, sizeof(http->raw) - http->raw_end, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return cb_error_set(err, CB_E_IO, errno,
					    "cannot receive from the Lambda API at %s: %s",
					    http->host_header, strerror(errno));
		if (n == 0)
			http->eof = 1;
		http->raw_end += (size_t)n;
		return CB_OK;
	}
}

/*
 * Takes one CRLF-terminated line out of raw into line (NUL-terminated, CRLF
 * removed). *closed is set when the server closed before a whole line came.
 */
static enum cb_status read_line(struct cb_lambda_http *http, char *line, size_t line_size,
				int64_t deadline_ms, int *closed, struct cb_error *err)
{
	*closed = 0;
	for (;;) {
		char *start = http->raw + http->raw_start;
		size_t have = http->raw_end - http->raw_start;
		char *nl = memchr(start, '\n', have);
		enum cb_status status;

		if (nl != NULL) {
			size_t len = (size_t)(nl - start);

			if (len > 0 && start[len - 1] == '\r')
				len--;
			if (len >= line_size)
				return cb_error_set(err, CB_E_IO, 0,
						    "the Lambda API sent a line longer than %zu bytes",
						    line_size - 1);
			memcpy(line, start, len);
			line[len] = '\0';
			http->raw_start += (size_t)(nl - start) + 1;
			return CB_OK;
		}
		if (http->eof) {
			*closed = 1;
			return cb_error_set(err, CB_E_IO, 0,
					    "the Lambda API at %s closed the connection mid-response",
					    http->host_header);
		}
		status = fill(http, deadline_ms, err);
		if (status != CB_OK)
			return status;
	}
}

/* Consumes len body bytes (len == SIZE_MAX: until the server closes), keeping what fits. */
static enum cb_status read_body(struct cb_lambda_http *http, size_t len, int64_t deadline_ms,
				struct cb_lambda_http_response *resp, struct cb_error *err)
{
	while (len > 0) {
		size_t have = http->raw_end - http->raw_start;
		size_t take;
		size_t room = CB_LAMBDA_HTTP_BODY_BYTES - resp->body_len;

		if (have == 0) {
			enum cb_status status;

			if (http->eof) {
				if (len == SIZE_MAX)
					return CB_OK;
				return cb_error_set(err, CB_E_IO, 0,
						    "the Lambda API at %s closed the connection "
						    "mid-body",
						    http->host_header);
			}
			status = fill(http, deadline_ms, err);
			if (status != CB_OK)
				return status;
			continue;
		}
		take = have < len ? have : len;
		if (take > room) {
			resp->body_truncated = 1;
			memcpy(http->body + resp->body_len, http->raw + http->raw_start, room);
			resp->body_len += room;
		} else {
			memcpy(http->body + resp->body_len, http->raw + http->raw_start, take);
			resp->body_len += take;
		}
		http->raw_start += take;
		if (len != SIZE_MAX)
			len -= take;
	}
	return CB_OK;
}

static int header_is(const char *line, const char *name, const char **value)
{
	size_t n = strlen(name);

	if (strncasecmp(line, name, n) != 0 || line[n] != ':')
		return 0;
	*value = line + n + 1;
	while (**value == ' ' || **value == '\t')
		(*value)++;
	return 1;
}

static enum cb_status read_chunked(struct cb_lambda_http *http, int64_t deadline_ms,
				   struct cb_lambda_http_response *resp, struct cb_error *err)
{
	char line[256];
	int closed;

	for (;;) {
		enum cb_status status =
			read_line(http, line, sizeof(line), deadline_ms, &closed, err);
		unsigned long long size;
		char *end;

		if (status != CB_OK)
			return status;
		errno = 0;
		size = strtoull(line, &end, 16);
		if (errno != 0 || end == line || (*end != '\0' && *end != ';' && *end != ' '))
			return cb_error_set(err, CB_E_IO, 0,
					    "the Lambda API sent a malformed chunk size");
		if (size == 0)
			break;
		if (size > SIZE_MAX / 2)
			return cb_error_set(err, CB_E_IO, 0, "the Lambda API sent a huge chunk");
		status = read_body(http, (size_t)size, deadline_ms, resp, err);
		if (status == CB_OK)
			status = read_line(http, line, sizeof(line), deadline_ms, &closed, err);
		if (status != CB_OK)
			return status;
	}
	/* Trailers, up to the empty line. */
	for (;;) {
		enum cb_status status =
			read_line(http, line, sizeof(line), deadline_ms, &closed, err);

		if (status != CB_OK)
			return status;
		if (line[0] == '\0')
			return CB_OK;
	}
}

/*
 * Reads one response. *stale is set when the server had closed the connection
 * before sending a single byte: the request may be sent again on a new one.
 */
static enum cb_status read_response(struct cb_lambda_http *http, const char *method,
				    const char *want_header, int64_t deadline_ms,
				    struct cb_lambda_http_response *resp, int *stale,
				    struct cb_error *err)
{
	char line[CB_LAMBDA_HTTP_RAW_BYTES];
	unsigned long long content_length = 0;
	int have_length = 0, chunked = 0, close_after = 0, closed;
	enum cb_status status;
	int minor;

	*stale = 0;
	status = read_line(http, line, sizeof(line), deadline_ms, &closed, err);
	if (status != CB_OK) {
		/* Nothing at all came back: the server had closed this connection while idle. */
		*stale = http->raw_end == 0 && (closed || err->sys_errno == ECONNRESET);
		return status;
	}
	if (sscanf(line, "HTTP/1.%d %3d", &minor, &resp->status) != 2 || resp->status < 100 ||
	    resp->status > 999)
		return cb_error_set(err, CB_E_IO, 0,
				    "the Lambda API at %s sent something that is not HTTP",
				    http->host_header);
	close_after = minor == 0;
	for (;;) {
		const char *value;

		status = read_line(http, line, sizeof(line), deadline_ms, &closed, err);
		if (status != CB_OK)
			return status;
		if (line[0] == '\0')
			break;
		if (header_is(line, "Content-Length", &value)) {
			char *end;

			errno = 0;
			content_length = strtoull(value, &end, 10);
			if (errno != 0 || end == value || *end != '\0')
				return cb_error_set(err, CB_E_IO, 0,
						    "the Lambda API sent a bad Content-Length");
			have_length = 1;
		} else if (header_is(line, "Transfer-Encoding", &value)) {
			chunked = strcasecmp(value, "chunked") == 0;
		} else if (header_is(line, "Connection", &value)) {
			if (strcasecmp(value, "close") == 0)
				close_after = 1;
			else if (strcasecmp(value, "keep-alive") == 0)
				close_after = 0;
		}
		if (want_header != NULL && header_is(line, want_header, &value))
			snprintf(resp->wanted, sizeof(resp->wanted), "%s", value);
	}
	if (strcmp(method, "HEAD") == 0 || resp->status == 204 || resp->status == 304 ||
	    resp->status < 200)
		status = CB_OK;
	else if (chunked)
		status = read_chunked(http, deadline_ms, resp, err);
	else if (have_length)
		status = content_length > SIZE_MAX / 2 ?
				 cb_error_set(err, CB_E_IO, 0, "the Lambda API sent a huge body") :
				 read_body(http, (size_t)content_length, deadline_ms, resp, err);
	else {
		close_after = 1;
		status = read_body(http, SIZE_MAX, deadline_ms, resp, err);
	}
	http->body[resp->body_len] = '\0';
	resp->body = http->body;
	if (status == CB_OK && close_after)
		cb_lambda_http_close(http);
	return status;
}

static enum cb_status format_request(const struct cb_lambda_http *http, char *req, size_t *len,
				     const char *method, const char *path,
				     const struct cb_lambda_http_header *headers,
				     size_t header_count, const char *body, size_t body_len,
				     struct cb_error *err)
{
	size_t n = 0;
	int w;

	w = snprintf(req, CB_LAMBDA_HTTP_REQUEST_MAX, "%s %s HTTP/1.1\r\nHost: %s\r\n", method,
		     path, http->host_header);
	if (w < 0 || (size_t)w >= CB_LAMBDA_HTTP_REQUEST_MAX)
		goto too_long;
	n = (size_t)w;
	for (size_t i = 0; i < header_count; i++) {
		if (strpbrk(headers[i].name, "\r\n:") != NULL ||
		    strpbrk(headers[i].value, "\r\n") != NULL)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "header %.60s has a line break in its name or value",
					    headers[i].name);
		w = snprintf(req + n, CB_LAMBDA_HTTP_REQUEST_MAX - n, "%s: %s\r\n", headers[i].name,
			     headers[i].value);
		if (w < 0 || (size_t)w >= CB_LAMBDA_HTTP_REQUEST_MAX - n)
			goto too_long;
		n += (size_t)w;
	}
	if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
		w = snprintf(req + n, CB_LAMBDA_HTTP_REQUEST_MAX - n,
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n",
			     body != NULL ? body_len : 0);
		if (w < 0 || (size_t)w >= CB_LAMBDA_HTTP_REQUEST_MAX - n)
			goto too_long;
		n += (size_t)w;
	}
	if (n + 2 + (body != NULL ? body_len : 0) > CB_LAMBDA_HTTP_REQUEST_MAX)
		goto too_long;
	memcpy(req + n, "\r\n", 2);
	n += 2;
	if (body != NULL) {
		memcpy(req + n, body, body_len);
		n += body_len;
	}
	*len = n;
	return CB_OK;
too_long:
	return cb_error_set(err, CB_E_CONFIG, 0, "request to %s is longer than %u bytes", path,
			    CB_LAMBDA_HTTP_REQUEST_MAX);
}

enum cb_status cb_lambda_http_request(struct cb_lambda_http *http, const char *method,
				      const char *path, const struct cb_lambda_http_header *headers,
				      size_t header_count, const char *body, size_t body_len,
				      const char *want_header, int64_t timeout_ms,
				      struct cb_lambda_http_response *resp, struct cb_error *err)
{
	char req[CB_LAMBDA_HTTP_REQUEST_MAX];
	int64_t deadline_ms = timeout_ms < 0 ? -1 : cb_clock_now_ms() + timeout_ms;
	enum cb_status status;
	size_t req_len = 0;

	memset(resp, 0, sizeof(*resp));
	resp->body = http->body;
	http->body[0] = '\0';
	status = format_request(http, req, &req_len, method, path, headers, header_count, body,
				body_len, err);
	if (status != CB_OK)
		return status;
	for (int attempt = 0; attempt < 2; attempt++) {
		int reused = http->fd >= 0;
		int stale = 0;

		if (!reused) {
			status = connect_now(http, err);
			if (status != CB_OK)
				return status;
		}
		http->raw_start = http->raw_end = 0;
		http->eof = 0;
		status = send_all(http, req, req_len, deadline_ms, err);
		if (status == CB_OK)
			status = read_response(http, method, want_header, deadline_ms, resp, &stale,
					       err);
		else
			stale = err->sys_errno == EPIPE || err->sys_errno == ECONNRESET;
		if (status == CB_OK)
			return CB_OK;
		cb_lambda_http_close(http);
		/* An idle kept-alive connection the server had closed: try once on a new one. */
		if (!reused || !stale)
			return status;
		memset(resp, 0, sizeof(*resp));
		resp->body = http->body;
	}
	return status;
}
