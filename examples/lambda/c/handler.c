/*
 * A Lambda function in C, run as a custom runtime (provided.al2023 or provided.al2):
 * /opt/bootstrap (coldboot, from the layer) gets the bundle into /tmp and then execs
 * this program from the bundle's bin/ (COLDBOOT_EXEC=bin/handler), with the bundle's
 * lib/ in LD_LIBRARY_PATH and its share/ readable under $COLDBOOT_BUNDLE.
 *
 * It implements the Runtime API loop itself: GET the next invocation, answer it,
 * repeat. One short-lived connection per request keeps it small; the API is local.
 *
 * Build a static binary so it runs on either Amazon Linux:
 *     cc -static -O2 -o bundle/bin/handler handler.c
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_BYTES 65536

/* Sends one request to the Runtime API and reads the whole answer (the server closes). */
static int api_request(const char *method, const char *path, const char *body, char *resp,
		       size_t resp_size)
{
	const char *api = getenv("AWS_LAMBDA_RUNTIME_API"); /* "127.0.0.1:9001" */
	char host[64], req[BUF_BYTES];
	struct sockaddr_in addr;
	const char *colon;
	size_t got = 0;
	int fd, n;

	if (api == NULL || (colon = strrchr(api, ':')) == NULL ||
	    (size_t)(colon - api) >= sizeof(host))
		return -1;
	memcpy(host, api, (size_t)(colon - api));
	host[colon - api] = '\0';
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		     method, path, api, body != NULL ? strlen(body) : 0, body != NULL ? body : "");
	if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, resp + got, resp_size - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == resp_size - 1)
			break;
	}
	resp[got] = '\0';
	close(fd);
	return got > 0 ? 0 : -1;
}

/* Copies the value of header name from an HTTP response into out. */
static int header(const char *resp, const char *name, char *out, size_t out_size)
{
	size_t len = strlen(name);

	for (const char *p = strstr(resp, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		size_t n;

		if (strncasecmp(line, name, len) != 0 || line[len] != ':')
			continue;
		line += len + 1;
		while (*line == ' ')
			line++;
		n = strcspn(line, "\r\n");
		if (n >= out_size)
			return -1;
		memcpy(out, line, n);
		out[n] = '\0';
		return 0;
	}
	return -1;
}

int main(void)
{
	static char resp[BUF_BYTES], body[4096];
	const char *handler = getenv("_HANDLER");
	const char *bundle = getenv("COLDBOOT_BUNDLE");

	for (;;) {
		char request_id[128], path[256];
		const char *event;

		if (api_request("GET", "/2018-06-01/runtime/invocation/next", NULL, resp,
				sizeof(resp)) != 0)
			return 1;
		if (header(resp, "Lambda-Runtime-Aws-Request-Id", request_id, sizeof(request_id)) !=
		    0)
			return 1;
		event = strstr(resp, "\r\n\r\n");
		event = event != NULL ? event + 4 : "null";
		/* The event is echoed back as JSON; a real handler would parse and use it. */
		snprintf(body, sizeof(body),
			 "{\"handler\":\"%s\",\"bundle\":\"%s\",\"language\":\"c\",\"event\":%s}",
			 handler != NULL ? handler : "", bundle != NULL ? bundle : "",
			 event[0] != '\0' ? event : "null");
		snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/response",
			 request_id);
		if (api_request("POST", path, body, resp, sizeof(resp)) != 0)
			return 1;
	}
}
