/*
 * Extension mode: register, (optionally) get the bundle ready during init,
 * count INVOKE events, write a lifetime record at SHUTDOWN.
 *
 * Lambda runs every executable in /opt/extensions at init and waits for each
 * to register and then ask for its next event before the first invocation.
 * Between events the whole environment is frozen, so this process costs
 * nothing while idle and one HTTP round trip per invocation on a connection
 * kept open: fixed buffers, no allocation after start.
 *
 * A layer ships this beside the wrapper, so every function using the layer
 * runs it. It stays passive unless asked: registered for SHUTDOWN only when
 * stats are off, so Lambda does not even wake it per invocation.
 */
#include "extension.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ensure.h"
#include "lambda_http.h"
#include "lambda_runtime.h"

#define REGISTER_TIMEOUT_MS 10000
#define REPORT_TIMEOUT_MS 5000
#define EXTENSION_ID_MAX CB_LAMBDA_HTTP_VALUE_MAX
#define ERROR_BODY_MAX 2048

static const char *extension_name(const struct cb_config *cfg)
{
	const char *name = getenv("COLDBOOT_EXTENSION_NAME");
	const char *argv0;
	const char *slash;

	if (name != NULL && name[0] != '\0')
		return name;
	/* `coldboot extension` has no file name of its own to go by. */
	if (cfg->argc > 1 && strcmp(cfg->argv[1], "extension") == 0)
		return "coldboot";
	argv0 = cfg->argc > 0 ? cfg->argv[0] : "coldboot";
	slash = strrchr(argv0, '/');
	return slash != NULL ? slash + 1 : argv0;
}

static int is_off(const char *value)
{
	static const char *const off[] = {"0", "off", "false", "no", "disabled"};

	if (value == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++)
		if (strcmp(value, off[i]) == 0)
			return 1;
	return 0;
}

/*
 * Finds "key": "value" in a flat JSON object and copies value (escapes are
 * not decoded; Lambda's event types and reasons have none). Returns 0, or -1
 * when the key is missing or not a string.
 */
static int json_string_field(const char *json, const char *key, char *out, size_t out_size)
{
	char quoted[64];
	const char *p;
	size_t n = 0;

	snprintf(quoted, sizeof(quoted), "\"%s\"", key);
	p = strstr(json, quoted);
	if (p == NULL)
		return -1;
	p += strlen(quoted);
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p++ != ':')
		return -1;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p++ != '"')
		return -1;
	while (*p != '\0' && *p != '"' && n + 1 < out_size)
		out[n++] = *p++;
	out[n] = '\0';
	return *p == '"' ? 0 : -1;
}

/* Posts failure to path (init/error or exit/error). Best effort, like the runtime's report. */
static void post_error(struct cb_lambda_http *http, const char *id, const char *path,
		       const struct cb_error *failure)
{
	struct cb_lambda_http_response resp;
	struct cb_error err;
	char body[ERROR_BODY_MAX];
	const char *type = cb_lambda_error_type(failure->code);
	struct cb_lambda_http_header headers[] = {
		{"Lambda-Extension-Identifier", id},
		{"Lambda-Extension-Function-Error-Type", type},
	};
	size_t body_len = cb_lambda_error_body(body, sizeof(body), type, failure->message);

	cb_error_init(&err);
	if (cb_lambda_http_request(http, "POST", path, headers, 2, body, body_len, NULL,
				   REPORT_TIMEOUT_MS, &resp, &err) != CB_OK)
		cb_log(CB_LOG_WARN, "cannot report the error to Lambda: %s", err.message);
	else if (resp.status / 100 != 2)
		cb_log(CB_LOG_WARN, "Lambda answered the error report with HTTP %d: %.200s",
		       resp.status, resp.body);
}

static enum cb_status register_extension(struct cb_lambda_http *http, const char *name,
					 int want_invokes, char *id, size_t id_size,
					 struct cb_error *err)
{
	static const char both[] = "{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}";
	static const char shutdown_only[] = "{\"events\":[\"SHUTDOWN\"]}";
	struct cb_lambda_http_header header = {"Lambda-Extension-Name", name};
	struct cb_lambda_http_response resp;
	const char *body = want_invokes ? both : shutdown_only;
	enum cb_status status;

	status = cb_lambda_http_request(http, "POST", "/2020-01-01/extension/register", &header, 1,
					body, strlen(body), "Lambda-Extension-Identifier",
					REGISTER_TIMEOUT_MS, &resp, err);
	if (status != CB_OK)
		return status;
	if (resp.status != 200 || resp.wanted[0] == '\0')
		return cb_error_set(err, CB_E_IO, 0,
				    "the Extensions API refused to register \"%s\" (HTTP %d: %.200s); "
				    "the name must be the extension's file name under "
				    "/opt/extensions (or set COLDBOOT_EXTENSION_NAME)",
				    name, resp.status, resp.body);
	snprintf(id, id_size, "%s", resp.wanted);
	return CB_OK;
}

/* Gets the bundle ready during init, as `coldboot ensure` does. */
static enum cb_status ensure_during_init(struct cb_config *cfg, struct cb_error *err)
{
	struct cb_ensure_result ensured;
	enum cb_status status = cb_config_require_bundle(cfg, err);

	if (status != CB_OK)
		return status;
	status = cb_ensure_bundle(cfg, &ensured, err);
	if (status != CB_OK)
		return status;
	cb_log(CB_LOG_DEBUG, "extension: bundle %s ready at %s in %lld ms",
	       cb_outcome_name(ensured.outcome), ensured.bundle_dir, (long long)ensured.total_ms);
	return CB_OK;
}

static void write_lifetime(const struct cb_config *cfg, const struct cb_extension_result *res,
			   int64_t started_wall_ms)
{
	struct cb_lifetime_record record;
	struct cb_container container;
	struct cb_cache cache;
	struct cb_error err;
	int have_container = 0;

	cb_cache_init(&cache);
	if (cb_cache_open(&cache, cfg->dir, &err) == CB_OK &&
	    cb_container_read(&cache, &container, &err) == CB_OK)
		have_container = 1;
	else if (err.code != CB_E_NOT_FOUND)
		cb_log(CB_LOG_WARN, "lifetime record without a container id: %s", err.message);
	cb_cache_close(&cache);

	memset(&record, 0, sizeof(record));
	record.ts_ms = cb_clock_wall_ms();
	record.started_ms = started_wall_ms;
	record.container = have_container ? &container : NULL;
	record.invocations = res->invocations;
	record.alive_ms = res->alive_ms;
	record.shutdown_reason = res->shutdown_reason;
	if (cb_stats_emit_lifetime(cfg->stats_file, &record, &err) != CB_OK)
		cb_log(CB_LOG_WARN, "cannot record stats: %s", err.message);
}

enum cb_status cb_extension_run(struct cb_config *cfg, struct cb_extension_result *res,
				struct cb_error *err)
{
	static struct cb_lambda_http http; /* 24 KiB of buffers: not on the stack */
	struct cb_lambda_http_header header;
	struct cb_lambda_http_response resp;
	char id[EXTENSION_ID_MAX];
	char event_type[32];
	int64_t start_ms = cb_clock_now_ms();
	int64_t start_wall_ms = cb_clock_wall_ms();
	int off = is_off(getenv("COLDBOOT_EXTENSION"));
	int counting = !off && cfg->stats_enabled;
	const char *name = extension_name(cfg);
	enum cb_status status;

	memset(res, 0, sizeof(*res));
	status = cb_lambda_http_init(&http, getenv("AWS_LAMBDA_RUNTIME_API"), err);
	if (status != CB_OK)
		return status;
	status = register_extension(&http, name, counting, id, sizeof(id), err);
	if (status != CB_OK)
		goto out;
	cb_log(CB_LOG_DEBUG, "extension %s registered for %s", name,
	       counting ? "INVOKE and SHUTDOWN" : "SHUTDOWN");

	if (!off && cfg->url != NULL && cfg->url[0] != '\0') {
		status = ensure_during_init(cfg, err);
		if (status != CB_OK) {
			post_error(&http, id, "/2020-01-01/extension/init/error", err);
			goto out;
		}
		res->installed = 1;
	}

	header.name = "Lambda-Extension-Identifier";
	header.value = id;
	for (;;) {
		status = cb_lambda_http_request(&http, "GET", "/2020-01-01/extension/event/next",
						&header, 1, NULL, 0, NULL, -1, &resp, err);
		if (status == CB_OK && resp.status != 200)
			status = cb_error_set(err, CB_E_IO, 0,
					      "the Extensions API answered event/next with HTTP %d: "
					      "%.200s",
					      resp.status, resp.body);
		if (status != CB_OK) {
			post_error(&http, id, "/2020-01-01/extension/exit/error", err);
			goto out;
		}
		if (json_string_field(resp.body, "eventType", event_type, sizeof(event_type)) != 0)
			continue; /* not an event we know; ask for the next */
		if (strcmp(event_type, "INVOKE") == 0) {
			res->invocations++;
		} else if (strcmp(event_type, "SHUTDOWN") == 0) {
			if (json_string_field(resp.body, "shutdownReason", res->shutdown_reason,
					      sizeof(res->shutdown_reason)) != 0)
				res->shutdown_reason[0] = '\0';
			break;
		}
	}
	res->alive_ms = cb_clock_now_ms() - start_ms;
	if (counting)
		write_lifetime(cfg, res, start_wall_ms);
out:
	cb_lambda_http_close(&http);
	return status;
}
