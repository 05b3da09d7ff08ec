/*
 * Extension mode: coldboot as a Lambda external extension
 * (/opt/extensions/coldboot, or `coldboot extension`).
 */
#ifndef CB_EXTENSION_H
#define CB_EXTENSION_H

#include <stdint.h>

#include "config.h"

struct cb_extension_result {
	uint64_t invocations;     /* INVOKE events seen */
	int64_t alive_ms;         /* from start to SHUTDOWN */
	char shutdown_reason[32]; /* "spindown", "timeout", "failure", or "" */
	int installed;            /* the bundle was ensured during init */
};

/*
 * Registers with the Extensions API at $AWS_LAMBDA_RUNTIME_API under the
 * extension's file name (COLDBOOT_EXTENSION_NAME overrides it), for SHUTDOWN
 * and, when stats are on, INVOKE. During init, when COLDBOOT_URL is set,
 * ensures the bundle (as `coldboot ensure` would) before the first
 * event/next, so the runtime finds it ready or waits on the lock for it.
 * Then counts INVOKE events, one kept-alive request each, until SHUTDOWN,
 * when it writes one lifetime record (cb_stats_emit_lifetime) if stats are
 * on. COLDBOOT_EXTENSION=off keeps it registered for SHUTDOWN only, doing
 * nothing. A failure during init is posted to /extension/init/error, a later
 * one to /extension/exit/error, both with the type Coldboot.<Kind>.
 * Errors: CB_E_CONFIG (not under Lambda), CB_E_IO (API failures), and those
 * of cb_ensure_bundle.
 */
enum cb_status cb_extension_run(struct cb_config *cfg, struct cb_extension_result *res,
				struct cb_error *err);

#endif
