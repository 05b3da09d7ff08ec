/* The cold path inside coldboot-cold: fetch, verify and unpack into staging. */
#ifndef CB_INSTALL_H
#define CB_INSTALL_H

#include "cold.h"

/* Implements cb_cold_ops.install; see bootstrap/cold.h for the contract. */
enum cb_status cb_install_run(const struct cb_install_request *req, struct cb_install_result *res,
			      struct cb_error *err);

#endif
