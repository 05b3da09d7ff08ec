/* `coldboot status`: what is cached, this container's id and counters. */
#ifndef CB_STATUS_CMD_H
#define CB_STATUS_CMD_H

#include "config.h"

/* Prints the cache's state to stdout. Errors: CB_E_CONFIG, CB_E_IO. */
enum cb_status cb_status_cmd_run(const struct cb_config *cfg, struct cb_error *err);

#endif
