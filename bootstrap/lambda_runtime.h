/*
 * Lambda's Runtime API from coldboot's side: custom-runtime mode (coldboot
 * installed as `bootstrap`, or COLDBOOT_EXEC set) and reporting a failure
 * before the runtime started as an init error, so it shows in the console.
 */
#ifndef CB_LAMBDA_RUNTIME_H
#define CB_LAMBDA_RUNTIME_H

#include <stddef.h>

#include "config.h"

/* The Lambda error type for a status: "Coldboot.Checksum", "Coldboot.Download", ... */
const char *cb_lambda_error_type(enum cb_status code);

/*
 * Writes {"errorMessage":..., "errorType":..., "stackTrace":[]} into out
 * (NUL-terminated, the message cut to fit). Returns its length.
 */
size_t cb_lambda_error_body(char *out, size_t out_size, const char *error_type, const char *message);

/*
 * Non-zero when a failure of this start should be posted to the Runtime API:
 * AWS_LAMBDA_RUNTIME_API is set, and coldboot runs as the custom runtime's
 * bootstrap, or as AWS_LAMBDA_EXEC_WRAPPER in front of a managed runtime (no
 * runtime process has talked to the API yet, so nobody else will report it).
 */
int cb_lambda_runtime_should_report(const struct cb_config *cfg);

/*
 * POSTs failure to /2018-06-01/runtime/init/error with the header
 * Lambda-Runtime-Function-Error-Type: Coldboot.<Kind>. Best effort: a failure
 * to report is logged as a warning, and the caller exits with its own code
 * either way.
 */
void cb_lambda_runtime_report_init_error(const struct cb_error *failure);

/*
 * Custom-runtime mode, after the bundle is ready: sets the bundle's
 * environment and execs COLDBOOT_EXEC (words separated by spaces; the first
 * is looked up in the bundle, then in $LAMBDA_TASK_ROOT, then in PATH) with
 * cfg->args appended. Without COLDBOOT_EXEC, runs the bundle's own
 * `bootstrap`. _HANDLER and the rest of Lambda's environment pass through.
 * Returns only on failure: CB_E_CONFIG (nothing to run), CB_E_NOT_FOUND,
 * CB_E_EXEC, CB_E_NOMEM.
 */
enum cb_status cb_lambda_runtime_exec(const struct cb_config *cfg, const char *bundle_dir,
				      struct cb_error *err);

#endif
