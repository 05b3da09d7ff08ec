#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int cb_config_parse_seconds(const char *text, int64_t *ms)
{
	char *end;
	double seconds;

	if (text == NULL || text[0] == '\0')
		return -1;
	errno = 0;
	seconds = strtod(text, &end);
	if (errno != 0 || *end != '\0' || !(seconds >= 0) || seconds > 86400.0 * 365)
		return -1;
	*ms = (int64_t)(seconds * 1000.0 + 0.5);
	return 0;
}

int cb_config_parse_bytes(const char *text, uint64_t *bytes)
{
	static const struct {
		const char *suffix;
		uint64_t factor;
	} units[] = {
		{"", 1},
		{"k", 1000},
		{"K", 1024},
		{"KB", 1000},
		{"KiB", 1024},
		{"M", 1024 * 1024},
		{"MB", 1000 * 1000},
		{"MiB", 1024 * 1024},
		{"G", 1024ull * 1024 * 1024},
		{"GB", 1000ull * 1000 * 1000},
		{"GiB", 1024ull * 1024 * 1024},
	};
	unsigned long long value;
	char *end;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (value > UINT64_MAX / units[i].factor)
				return -1;
			*bytes = (uint64_t)value * units[i].factor;
			return 0;
		}
	}
	return -1;
}

/* COLDBOOT_STATS: off, "1"/"true"/"stdout" for metric lines on stdout, else a file. */
static void set_stats(struct cb_config *cfg, const char *value)
{
	static const char *const off[] = {"", "0", "false", "off", "no"};
	static const char *const on[] = {"1", "true", "on", "yes", "stdout", "emf", "-"};

	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++)
		if (strcmp(value, off[i]) == 0) {
			cfg->stats_enabled = 0;
			cfg->stats_file = NULL;
			return;
		}
	cfg->stats_enabled = 1;
	cfg->stats_file = value;
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++)
		if (strcmp(value, on[i]) == 0)
			cfg->stats_file = NULL;
}

uint64_t cb_config_default_memory_budget(const char *lambda_mb)
{
	uint64_t mb = 0;

	/* Lambda gives whole megabytes (128 to 10240); anything else is ignored. */
	if (lambda_mb == NULL || lambda_mb[0] < '0' || lambda_mb[0] > '9' ||
	    cb_config_parse_bytes(lambda_mb, &mb) != 0 || mb == 0 || mb > (1ull << 30))
		return CB_DEFAULT_MEMORY_BUDGET;
	mb = (mb << 20) / 4;
	return mb < CB_MIN_MEMORY_BUDGET ? CB_MIN_MEMORY_BUDGET : mb;
}

static enum cb_status apply_option(struct cb_config *cfg, const char *name, const char *value,
				   const char *origin, struct cb_error *err)
{
	if (strcmp(name, "url") == 0) {
		cfg->url = value;
	} else if (strcmp(name, "checksum") == 0) {
		cfg->checksum_text = value;
	} else if (strcmp(name, "dir") == 0) {
		cfg->dir = value;
	} else if (strcmp(name, "stats") == 0) {
		set_stats(cfg, value);
	} else if (strcmp(name, "timeout") == 0) {
		if (cb_config_parse_seconds(value, &cfg->timeout_ms) != 0 || cfg->timeout_ms == 0)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "%s \"%s\" is not a positive number of seconds", origin,
					    value);
	} else if (strcmp(name, "lock-timeout") == 0) {
		if (cb_config_parse_seconds(value, &cfg->lock_timeout_ms) != 0)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "%s \"%s\" is not a number of seconds", origin, value);
	} else if (strcmp(name, "max-size") == 0) {
		if (cb_config_parse_bytes(value, &cfg->max_size_bytes) != 0)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "%s \"%s\" is not a size in bytes (e.g. 500000000, 512M, 2G)",
					    origin, value);
	} else if (strcmp(name, "memory-budget") == 0) {
		if (cb_config_parse_bytes(value, &cfg->memory_budget_bytes) != 0)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "%s \"%s\" is not a size in bytes (e.g. 64M, 1G)",
					    origin, value);
		if (cfg->memory_budget_bytes < CB_MIN_MEMORY_BUDGET)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "%s \"%s\" is too small: the cold path needs at least "
					    "%lluM",
					    origin, value,
					    (unsigned long long)(CB_MIN_MEMORY_BUDGET >> 20));
	} else if (strcmp(name, "log") == 0) {
		if (cb_log_parse_level(value, &cfg->log_level) != 0)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "%s \"%s\" is not one of error, warn, info, debug",
					    origin, value);
	}
	return CB_OK;
}

static enum cb_status read_environment(struct cb_config *cfg, struct cb_error *err)
{
	static const struct {
		const char *env;
		const char *name;
	} vars[] = {
		{"COLDBOOT_URL", "url"},
		{"COLDBOOT_CHECKSUM", "checksum"},
		{"COLDBOOT_DIR", "dir"},
		{"COLDBOOT_STATS", "stats"},
		{"COLDBOOT_TIMEOUT", "timeout"},
		{"COLDBOOT_LOCK_TIMEOUT", "lock-timeout"},
		{"COLDBOOT_MAX_SIZE", "max-size"},
		{"COLDBOOT_LOG", "log"},
		{"COLDBOOT_MEMORY_BUDGET", "memory-budget"},
	};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *value = getenv(vars[i].env);
		enum cb_status status;

		if (value == NULL || (value[0] == '\0' && strcmp(vars[i].name, "stats") != 0))
			continue;
		status = apply_option(cfg, vars[i].name, value, vars[i].env, err);
		if (status != CB_OK)
			return status;
	}
	return CB_OK;
}

static enum cb_command command_named(const char *word)
{
	static const struct {
		const char *name;
		enum cb_command command;
	} commands[] = {
		{"ensure", CB_CMD_ENSURE},       {"status", CB_CMD_STATUS}, {"stats", CB_CMD_STATS},
		{"hash", CB_CMD_HASH},           {"help", CB_CMD_HELP},     {"pack", CB_CMD_PACK},
		{"extension", CB_CMD_EXTENSION},
	};

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(word, commands[i].name) == 0)
			return commands[i].command;
	return CB_CMD_RUN;
}

/*
 * How Lambda starts coldboot without a subcommand: as a custom runtime's
 * bootstrap (argv[0] named bootstrap, or COLDBOOT_EXEC set and no
 * arguments), or as an extension (argv[0] inside an extensions/ folder).
 * Configuration then comes from the environment only.
 */
static int in_extensions_dir(const char *path, const char *base)
{
	static const char dir[] = "extensions/";
	size_t n = sizeof(dir) - 1;
	size_t dir_len = (size_t)(base - path);

	if (dir_len < n || strncmp(base - n, dir, n) != 0)
		return 0;
	return dir_len == n || base[-(ptrdiff_t)n - 1] == '/';
}

static enum cb_command lambda_mode(int argc, char **argv, const char *exec)
{
	const char *name = argv[0] != NULL ? argv[0] : "";
	const char *base = strrchr(name, '/');

	base = base != NULL ? base + 1 : name;
	if (in_extensions_dir(name, base))
		return CB_CMD_EXTENSION;
	if (strcmp(base, "bootstrap") == 0 || (exec != NULL && argc <= 1))
		return CB_CMD_RUNTIME;
	return CB_CMD_RUN;
}

/* Options that take a value, as --name VALUE or --name=VALUE. */
static int takes_value(const char *name)
{
	static const char *const names[] = {"url",          "checksum",     "dir",
					    "timeout",      "max-size",     "log",
					    "lock-timeout", "memory-budget"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return 1;
	return 0;
}

enum cb_status cb_config_parse(int argc, char **argv, struct cb_config *cfg, struct cb_error *err)
{
	enum cb_status status;
	int i = 1;

	memset(cfg, 0, sizeof(*cfg));
	cfg->command = CB_CMD_RUN;
	cfg->dir = CB_DEFAULT_ROOT;
	cfg->timeout_ms = CB_DEFAULT_TIMEOUT_MS;
	cfg->lock_timeout_ms = -1;
	cfg->log_level = CB_LOG_INFO;
	cfg->memory_budget_bytes =
		cb_config_default_memory_budget(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"));
	cfg->argc = argc;
	cfg->argv = argv;
	cfg->exec = getenv("COLDBOOT_EXEC");
	if (cfg->exec != NULL && cfg->exec[0] == '\0')
		cfg->exec = NULL;
	if (argc > 0)
		cfg->command = lambda_mode(argc, argv, cfg->exec);

	status = read_environment(cfg, err);
	if (status != CB_OK)
		return status;
	if (cfg->command == CB_CMD_RUNTIME || cfg->command == CB_CMD_EXTENSION) {
		/* Lambda passes no options; any arguments go to the runtime. */
		cfg->args = argv + 1;
		cfg->arg_count = argc > 0 ? argc - 1 : 0;
		goto done;
	}

	if (argc > 1 && command_named(argv[1]) != CB_CMD_RUN) {
		cfg->command = command_named(argv[1]);
		i = 2;
		/* stats and pack parse their own options; hash takes files. */
		if (cfg->command == CB_CMD_STATS || cfg->command == CB_CMD_HASH ||
		    cfg->command == CB_CMD_PACK) {
			cfg->args = argv + i;
			cfg->arg_count = argc - i;
			goto done;
		}
		if (cfg->command == CB_CMD_HELP) {
			cfg->help_for = argc > 2 ? command_named(argv[2]) : CB_CMD_RUN;
			goto done;
		}
	}
	for (; i < argc; i++) {
		const char *arg = argv[i];
		char name[32];
		const char *value = NULL;
		const char *eq;

		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0')
			break;
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			cfg->help_for = cfg->command;
			cfg->command = CB_CMD_HELP;
			goto done;
		}
		if (strcmp(arg, "--version") == 0) {
			cfg->command = CB_CMD_VERSION;
			goto done;
		}
		if (strcmp(arg, "-q") == 0) {
			cfg->log_level = CB_LOG_ERROR;
			continue;
		}
		if (strcmp(arg, "-v") == 0) {
			cfg->log_level = CB_LOG_DEBUG;
			continue;
		}
		if (strcmp(arg, "--stats") == 0) {
			set_stats(cfg, "stdout");
			continue;
		}
		if (strncmp(arg, "--", 2) != 0)
			return cb_error_set(err, CB_E_USAGE, 0,
					    "unknown option %s; see coldboot --help", arg);
		eq = strchr(arg, '=');
		if ((eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2)) >= sizeof(name))
			return cb_error_set(err, CB_E_USAGE, 0,
					    "unknown option %.40s; see coldboot --help", arg);
		if (eq != NULL) {
			memcpy(name, arg + 2, (size_t)(eq - arg - 2));
			name[eq - arg - 2] = '\0';
			value = eq + 1;
		} else {
			strcpy(name, arg + 2);
		}
		if (strcmp(name, "stats") == 0) {
			set_stats(cfg, value);
			continue;
		}
		if (!takes_value(name))
			return cb_error_set(err, CB_E_USAGE, 0,
					    "unknown option --%s; see coldboot --help", name);
		if (value == NULL) {
			if (i + 1 >= argc)
				return cb_error_set(err, CB_E_USAGE, 0, "option --%s needs a value",
						    name);
			value = argv[++i];
		}
		status = apply_option(cfg, name, value, name, err);
		if (status != CB_OK)
			return status;
	}
	cfg->args = argv + i;
	cfg->arg_count = argc - i;
	if (cfg->command == CB_CMD_RUN && cfg->arg_count == 0)
		return cb_error_set(err, CB_E_USAGE, 0,
				    "no command to run; usage: coldboot [OPTIONS] [--] COMMAND [ARG...] "
				    "(see coldboot --help)");
	if (cfg->command != CB_CMD_RUN && cfg->arg_count != 0)
		return cb_error_set(err, CB_E_USAGE, 0,
				    "unexpected argument \"%s\"; see coldboot %s --help",
				    cfg->args[0], argv[1]);
done:
	if (cfg->lock_timeout_ms < 0)
		cfg->lock_timeout_ms = cfg->timeout_ms;
	cb_log_set_level(cfg->log_level);
	return CB_OK;
}

enum cb_status cb_config_require_bundle(struct cb_config *cfg, struct cb_error *err)
{
	if (cfg->url == NULL || cfg->url[0] == '\0')
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "no bundle URL: pass --url URL or set COLDBOOT_URL (s3://bucket/key, "
				    "https://..., http://..., file://...)");
	if (cb_checksum_parse(cfg->checksum_text, &cfg->checksum, err) != CB_OK)
		return CB_E_CONFIG;
	cfg->have_checksum = 1;
	return CB_OK;
}
