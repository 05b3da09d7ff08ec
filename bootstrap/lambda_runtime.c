/*
 * Custom-runtime mode and init-error reports to Lambda's Runtime API.
 *
 * In a custom runtime (provided.al2, provided.al2023) Lambda runs
 * /var/task/bootstrap or /opt/bootstrap with no arguments. When that is
 * coldboot (a copy or a symlink named bootstrap), it makes sure the bundle
 * is in place and then becomes the real runtime: COLDBOOT_EXEC, or the
 * bundle's own bootstrap. Lambda's variables (_HANDLER, LAMBDA_TASK_ROOT,
 * AWS_LAMBDA_RUNTIME_API, ...) pass through the exec untouched.
 */
#include "lambda_runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lambda_http.h"
#include "run_handler.h"

#define EXEC_WORDS_MAX 64
#define EXEC_VALUE_MAX 4096
#define INIT_ERROR_TIMEOUT_MS 5000
#define ERROR_BODY_MAX 2048

const char *cb_lambda_error_type(enum cb_status code)
{
	switch (code) {
	case CB_OK:
		return "Coldboot.Unknown";
	case CB_E_USAGE:
		return "Coldboot.Usage";
	case CB_E_CONFIG:
		return "Coldboot.Config";
	case CB_E_IO:
		return "Coldboot.IO";
	case CB_E_NOMEM:
		return "Coldboot.OutOfMemory";
	case CB_E_DOWNLOAD:
		return "Coldboot.Download";
	case CB_E_CHECKSUM:
		return "Coldboot.Checksum";
	case CB_E_ZIP:
		return "Coldboot.Zip";
	case CB_E_SPACE:
		return "Coldboot.Space";
	case CB_E_LOCK_TIMEOUT:
		return "Coldboot.LockTimeout";
	case CB_E_EXEC:
		return "Coldboot.Exec";
	case CB_E_NOT_FOUND:
		return "Coldboot.NotFound";
	}
	return "Coldboot.Unknown";
}

/* Appends s as JSON string content (no quotes) into out[*n..size-1), never splitting an escape. */
static void json_escape(char *out, size_t size, size_t *n, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t len;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			len = 2;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			len = 6;
		} else if (c >= 0x80) {
			/* Messages may quote names from a zip; keep the body valid UTF-8 whatever they hold. */
			esc[0] = '?';
			len = 1;
		} else {
			esc[0] = (char)c;
			len = 1;
		}
		if (*n + len >= size)
			return;
		memcpy(out + *n, esc, len);
		*n += len;
	}
}

size_t cb_lambda_error_body(char *out, size_t out_size, const char *error_type, const char *message)
{
	static const char tail_fmt[] = "\",\"errorType\":\"%s\",\"stackTrace\":[]}";
	char tail[128];
	size_t n;
	size_t tail_len;

	snprintf(tail, sizeof(tail), tail_fmt, error_type);
	tail_len = strlen(tail);
	n = (size_t)snprintf(out, out_size, "{\"errorMessage\":\"");
	if (out_size < n + tail_len + 1)
		return 0;
	/* The message is cut so the type and the closing brace always fit. */
	json_escape(out, out_size - tail_len, &n, message);
	memcpy(out + n, tail, tail_len + 1);
	return n + tail_len;
}

int cb_lambda_runtime_should_report(const struct cb_config *cfg)
{
	const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
	const char *wrapper = getenv("AWS_LAMBDA_EXEC_WRAPPER");

	if (api == NULL || api[0] == '\0')
		return 0;
	if (cfg->command == CB_CMD_RUNTIME)
		return 1;
	return cfg->command == CB_CMD_RUN && wrapper != NULL && wrapper[0] != '\0';
}

void cb_lambda_runtime_report_init_error(const struct cb_error *failure)
{
	struct cb_lambda_http http;
	struct cb_lambda_http_response resp;
	struct cb_error err;
	char body[ERROR_BODY_MAX];
	const char *type = cb_lambda_error_type(failure->code);
	struct cb_lambda_http_header header = {"Lambda-Runtime-Function-Error-Type", type};
	size_t body_len = cb_lambda_error_body(body, sizeof(body), type, failure->message);

	cb_error_init(&err);
	if (cb_lambda_http_init(&http, getenv("AWS_LAMBDA_RUNTIME_API"), &err) != CB_OK ||
	    cb_lambda_http_request(&http, "POST", "/2018-06-01/runtime/init/error", &header, 1, body,
				   body_len, NULL, INIT_ERROR_TIMEOUT_MS, &resp, &err) != CB_OK) {
		cb_log(CB_LOG_WARN, "cannot report the init error to Lambda: %s", err.message);
	} else if (resp.status / 100 != 2) {
		cb_log(CB_LOG_WARN, "Lambda answered the init error report with HTTP %d: %.200s",
		       resp.status, resp.body);
	} else {
		cb_log(CB_LOG_DEBUG, "reported the init error to Lambda as %s", type);
	}
	cb_lambda_http_close(&http);
}

static int exists_in(const char *dir, const char *name, char *out, size_t out_size)
{
	struct stat st;

	if (dir == NULL || dir[0] == '\0' ||
	    snprintf(out, out_size, "%s/%s", dir, name) >= (int)out_size)
		return 0;
	return stat(out, &st) == 0 && !S_ISDIR(st.st_mode);
}

enum cb_status cb_lambda_runtime_exec(const struct cb_config *cfg, const char *bundle_dir,
				      struct cb_error *err)
{
	char value[EXEC_VALUE_MAX];
	char resolved[PATH_MAX];
	char *words[EXEC_WORDS_MAX + 1];
	char **args;
	size_t count = 0;
	const char *spec = cfg->exec;
	enum cb_status status;

	if (spec == NULL || spec[0] == '\0') {
		if (!exists_in(bundle_dir, "bootstrap", resolved, sizeof(resolved)))
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "nothing to run: set COLDBOOT_EXEC to the runtime to "
					    "start (a path in the bundle, in the function's code, or "
					    "on PATH), or put an executable bootstrap at the top of "
					    "the bundle");
		spec = "bootstrap";
	}
	if (strlen(spec) >= sizeof(value))
		return cb_error_set(err, CB_E_CONFIG, 0, "COLDBOOT_EXEC is longer than %d bytes",
				    EXEC_VALUE_MAX - 1);
	strcpy(value, spec);
	for (char *p = strtok(value, " \t"); p != NULL; p = strtok(NULL, " \t")) {
		if (count == EXEC_WORDS_MAX)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "COLDBOOT_EXEC has more than %d words", EXEC_WORDS_MAX);
		words[count++] = p;
	}
	if (count == 0)
		return cb_error_set(err, CB_E_CONFIG, 0, "COLDBOOT_EXEC is blank");
	/* A relative name is the bundle's first, then the function code's, then PATH's. */
	if (words[0][0] != '/' &&
	    (exists_in(bundle_dir, words[0], resolved, sizeof(resolved)) ||
	     exists_in(getenv("LAMBDA_TASK_ROOT"), words[0], resolved, sizeof(resolved))))
		words[0] = resolved;
	args = calloc(count + (size_t)cfg->arg_count + 1, sizeof(*args));
	if (args == NULL)
		return cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory");
	memcpy(args, words, count * sizeof(*args));
	for (int i = 0; i < cfg->arg_count; i++)
		args[count + (size_t)i] = cfg->args[i];
	cb_log(CB_LOG_DEBUG, "custom runtime: exec %s", args[0]);
	status = cb_run_handler(bundle_dir, args, err);
	free(args);
	return status;
}
