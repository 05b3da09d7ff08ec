/* Ensuring the bundle: the warm path, and the cold path under the lock. */
#ifndef CB_ENSURE_H
#define CB_ENSURE_H

#include "cold.h"
#include "config.h"

struct cb_ensure_result {
	char bundle_dir[PATH_MAX]; /* bundles/<digest>, absolute, when ready */
	enum cb_outcome outcome;
	struct cb_install_result install; /* zero unless this start installed */
	int64_t lock_wait_ms;
	int64_t total_ms;
	struct cb_container container;
	int have_container; /* container was counted */
};

/*
 * Makes sure the configured bundle is published in the cache and fills res.
 * cfg must have passed cb_config_require_bundle. On failure nothing new is
 * published and staging/ is cleaned. Errors: every cb_status but USAGE, EXEC
 * and NOT_FOUND.
 */
enum cb_status cb_ensure_bundle(const struct cb_config *cfg, struct cb_ensure_result *res,
				struct cb_error *err);

#endif
