/* The command line and COLDBOOT_* environment, merged into one config (flags > env > defaults). */
#ifndef CB_CONFIG_H
#define CB_CONFIG_H

#include <stdint.h>

#include "../cache/cache.h"

enum cb_command {
	CB_CMD_RUN = 0, /* coldboot [OPTIONS] [--] COMMAND [ARG...] */
	CB_CMD_ENSURE,
	CB_CMD_STATUS,
	CB_CMD_STATS,
	CB_CMD_HASH,
	CB_CMD_HELP,
	CB_CMD_VERSION,
	CB_CMD_PACK,      /* coldboot pack [-o OUT.zip] DIR */
	CB_CMD_EXTENSION, /* a Lambda extension: /opt/extensions/coldboot, or coldboot extension */
	CB_CMD_RUNTIME,   /* a Lambda custom runtime: invoked as bootstrap, or COLDBOOT_EXEC set */
};

struct cb_config {
	enum cb_command command;
	enum cb_command help_for;  /* with CB_CMD_HELP: which command's help */
	const char *url;           /* borrowed from argv or the environment */
	const char *checksum_text; /* as given */
	struct cb_checksum checksum;
	int have_checksum;
	const char *dir;
	int stats_enabled;
	const char *stats_file; /* NULL: EMF lines on stdout */
	int64_t timeout_ms;
	int64_t lock_timeout_ms;
	uint64_t max_size_bytes;      /* 0: the free space */
	uint64_t memory_budget_bytes; /* what the cold path may keep resident */
	enum cb_log_level log_level;
	const char *exec; /* COLDBOOT_EXEC: what the custom runtime mode runs, or NULL */
	char **args;      /* run: the command and its arguments; hash/stats/pack: operands */
	int arg_count;
	int argc; /* the whole command line, for subcommands that parse their own */
	char **argv;
};

#define CB_DEFAULT_TIMEOUT_MS (300 * 1000)
#define CB_DEFAULT_MEMORY_BUDGET (64ull << 20)
#define CB_MIN_MEMORY_BUDGET (16ull << 20) /* the helper's libraries alone take ~11 MiB */

/*
 * The default --memory-budget: a quarter of the function's memory when
 * lambda_mb (AWS_LAMBDA_FUNCTION_MEMORY_SIZE, in MB) is a number, else
 * CB_DEFAULT_MEMORY_BUDGET; never below CB_MIN_MEMORY_BUDGET.
 */
uint64_t cb_config_default_memory_budget(const char *lambda_mb);

/*
 * Parses argv and the environment into cfg. Borrowed strings point into argv
 * or environ. Errors: CB_E_USAGE (bad command line), CB_E_CONFIG (bad value).
 * Does not require --url/--checksum: cb_config_require_bundle does.
 */
enum cb_status cb_config_parse(int argc, char **argv, struct cb_config *cfg, struct cb_error *err);

/* Checks that url and checksum are set and valid. Errors: CB_E_CONFIG. */
enum cb_status cb_config_require_bundle(struct cb_config *cfg, struct cb_error *err);

/* Parses "30", "1.5" (seconds) into milliseconds. Returns 0, or -1 when malformed. */
int cb_config_parse_seconds(const char *text, int64_t *ms);

/* Parses "1000", "64M", "2GiB", "512k" into bytes. Returns 0, or -1 when malformed. */
int cb_config_parse_bytes(const char *text, uint64_t *bytes);

#endif
