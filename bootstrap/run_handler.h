/* Running the handler with the bundle's environment. */
#ifndef CB_RUN_HANDLER_H
#define CB_RUN_HANDLER_H

#include "../cache/cache.h"

/*
 * Prefixes PATH, LD_LIBRARY_PATH, PYTHONPATH and NODE_PATH with the bundle's
 * layer-style folders that exist (bin/, lib/, python/ and
 * python/lib/python3.X/site-packages/, nodejs/node_modules/), sets
 * COLDBOOT_BUNDLE to bundle_dir, then execs args[0] (searched in PATH).
 * Returns only on failure: CB_E_NOT_FOUND (exit 127), CB_E_EXEC (exit 126),
 * CB_E_NOMEM.
 */
enum cb_status cb_run_handler(const char *bundle_dir, char **args, struct cb_error *err);

/* Sets the bundle's environment without running anything. Errors: CB_E_NOMEM. */
enum cb_status cb_run_handler_set_env(const char *bundle_dir, struct cb_error *err);

#endif
