/*
 * The front door: command line and environment -> one config -> a subcommand.
 * Only this file prints errors and chooses exit codes.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cold.h"
#include "config.h"
#include "ensure.h"
#include "extension.h"
#include "lambda_runtime.h"
#include "run_handler.h"
#include "stats_cmd.h"
#include "status_cmd.h"

static const char USAGE_RUN[] =
	"usage: coldboot [OPTIONS] [--] COMMAND [ARG...]\n"
	"       coldboot ensure [OPTIONS]\n"
	"       coldboot status [OPTIONS]\n"
	"       coldboot stats [--json] [--svg FILE] [FILE...]\n"
	"       coldboot hash [--xxh64] FILE...\n"
	"       coldboot pack [-o OUT.zip] DIR\n"
	"       coldboot extension [OPTIONS]\n"
	"\n"
	"Makes sure the dependency bundle (a zip) is unpacked in the cache, then runs\n"
	"COMMAND with PATH, LD_LIBRARY_PATH, PYTHONPATH and NODE_PATH prefixed from it\n"
	"and COLDBOOT_BUNDLE set. Also works as AWS_LAMBDA_EXEC_WRAPPER.\n"
	"\n"
	"options (environment variable in brackets; flags win):\n"
	"  --url URL          s3://bucket/key, https://..., http://..., file://... [COLDBOOT_URL]\n"
	"  --checksum SUM     xxh3:<32 hex> (from `coldboot hash`) or xxh64:<16 hex> [COLDBOOT_CHECKSUM]\n"
	"  --dir DIR          cache root, default /tmp/coldboot [COLDBOOT_DIR]\n"
	"  --stats[=FILE]     record this start: a metric line on stdout, or appended to FILE\n"
	"                     [COLDBOOT_STATS]\n"
	"  --timeout SEC      deadline for the whole cold path, default 300 [COLDBOOT_TIMEOUT]\n"
	"  --lock-timeout SEC how long to wait for another start's install, default: --timeout\n"
	"                     [COLDBOOT_LOCK_TIMEOUT]\n"
	"  --max-size BYTES   cap on the unpacked size (512M, 2G), default: the free space\n"
	"                     [COLDBOOT_MAX_SIZE]\n"
	"  --memory-budget BYTES  what a cold start may hold in memory (at least 16M), default\n"
	"                     64M, on Lambda a quarter of the function's memory\n"
	"                     [COLDBOOT_MEMORY_BUDGET]\n"
	"  -q, -v             errors only / debug logging [COLDBOOT_LOG=error|warn|info|debug]\n"
	"  -h, --help         this help; `coldboot help COMMAND` for a subcommand\n"
	"  --version          print the version\n"
	"\n"
	"exit status: 0 ok, 2 usage, 3 configuration, 4 download failed, 5 checksum mismatch,\n"
	"6 unsafe or broken zip, 7 not enough space, 8 lock wait timed out, 126/127 the\n"
	"handler could not be run; after the handler starts, its own status.\n";

static const char USAGE_ENSURE[] =
	"usage: coldboot ensure [OPTIONS]\n"
	"\n"
	"Makes sure the bundle is published in the cache and prints its directory.\n"
	"Takes the same options as the wrapper form (see coldboot --help).\n";

static const char USAGE_STATUS[] =
	"usage: coldboot status [OPTIONS]\n"
	"\n"
	"Prints what is cached under --dir: this container's id and counters, the bundles\n"
	"with their markers, and where current points. With --checksum, also whether that\n"
	"bundle is published.\n";

static const char USAGE_HASH[] =
	"usage: coldboot hash [--xxh64] FILE...\n"
	"\n"
	"Prints each file's checksum as xxh3:<32 hex> (XXH3-128, canonical big-endian, the\n"
	"same digits as `xxhsum -H2`), ready for --checksum / COLDBOOT_CHECKSUM. With one\n"
	"file only the checksum is printed; with several, `CHECKSUM  FILE` lines.\n";

static const char USAGE_PACK[] =
	"usage: coldboot pack [-o OUT.zip] DIR\n"
	"\n"
	"Zips the contents of DIR into a bundle (default: ./<name of DIR>.zip) and prints\n"
	"the two lines to paste into the function's settings. The zip is deterministic:\n"
	"entries sorted by name, timestamps 1980-01-01, modes 0644/0755, so packing the\n"
	"same folder twice gives the same bytes and the same checksum. Symlinks are kept\n"
	"when they stay inside DIR; one that is absolute or points outside is refused\n"
	"(coldboot would refuse it when unpacking).\n";

static int fail(const struct cb_error *err)
{
	fprintf(stderr, "coldboot: error: %s\n", err->message);
	return cb_status_exit_code(err->code);
}

static int print_help(enum cb_command command)
{
	switch (command) {
	case CB_CMD_ENSURE:
		fputs(USAGE_ENSURE, stdout);
		break;
	case CB_CMD_STATUS:
		fputs(USAGE_STATUS, stdout);
		break;
	case CB_CMD_HASH:
		fputs(USAGE_HASH, stdout);
		break;
	case CB_CMD_PACK:
		fputs(USAGE_PACK, stdout);
		break;
	case CB_CMD_STATS: {
		char name[] = "stats";
		char flag[] = "--help";
		char *argv[] = {name, flag, NULL};

		return cb_stats_cmd_main(2, argv);
	}
	default:
		fputs(USAGE_RUN, stdout);
		break;
	}
	return 0;
}

static int run_hash(const struct cb_config *cfg)
{
	enum cb_hash_algo algo = CB_HASH_XXH3_128;
	const struct cb_cold_ops *ops;
	struct cb_error err;
	int first = 0;
	int files;

	cb_error_init(&err);
	if (cfg->arg_count > 0 && strcmp(cfg->args[0], "--xxh64") == 0) {
		algo = CB_HASH_XXH64;
		first = 1;
	}
	if (cfg->arg_count > first &&
	    (strcmp(cfg->args[first], "--help") == 0 || strcmp(cfg->args[first], "-h") == 0))
		return print_help(CB_CMD_HASH);
	files = cfg->arg_count - first;
	if (files <= 0) {
		fputs(USAGE_HASH, stderr);
		return 2;
	}
	if (cb_cold_load(&ops, &err) != CB_OK)
		return fail(&err);
	for (int i = first; i < cfg->arg_count; i++) {
		struct cb_checksum sum;
		char text[CB_CHECKSUM_TEXT_MAX];

		if (ops->hash_file(cfg->args[i], algo, &sum, &err) != CB_OK)
			return fail(&err);
		cb_checksum_format(&sum, text, sizeof(text));
		if (files == 1)
			printf("%s\n", text);
		else
			printf("%s  %s\n", text, cfg->args[i]);
	}
	return 0;
}

/* The zip's file name, for the COLDBOOT_URL placeholder. */
static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

static int run_pack(const struct cb_config *cfg)
{
	struct cb_pack_request req;
	struct cb_pack_result res;
	const struct cb_cold_ops *ops;
	struct cb_error err;
	char default_out[PATH_MAX];
	char real_dir[PATH_MAX];
	const char *out = NULL;
	const char *dir = NULL;

	cb_error_init(&err);
	for (int i = 0; i < cfg->arg_count; i++) {
		const char *arg = cfg->args[i];

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
			return print_help(CB_CMD_PACK);
		if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) {
			if (i + 1 >= cfg->arg_count) {
				fprintf(stderr, "coldboot: error: %s needs a file name\n", arg);
				return 2;
			}
			out = cfg->args[++i];
		} else if (strncmp(arg, "--output=", 9) == 0) {
			out = arg + 9;
		} else if (arg[0] == '-' && arg[1] != '\0' && strcmp(arg, "--") != 0) {
			fprintf(stderr,
				"coldboot: error: unknown option %s; see coldboot pack --help\n",
				arg);
			return 2;
		} else if (dir == NULL && strcmp(arg, "--") != 0) {
			dir = arg;
		} else if (strcmp(arg, "--") != 0) {
			fprintf(stderr,
				"coldboot: error: pack takes one folder; see coldboot pack --help\n");
			return 2;
		}
	}
	if (dir == NULL || (out != NULL && out[0] == '\0')) {
		fputs(USAGE_PACK, stderr);
		return 2;
	}
	if (out == NULL) {
		/* Named after the folder: "dir/" gives dir.zip, "." the current folder's name. */
		size_t len = strlen(dir);
		const char *base;

		while (len > 1 && dir[len - 1] == '/')
			len--;
		if ((size_t)snprintf(real_dir, sizeof(real_dir), "%.*s", (int)len, dir) >=
		    sizeof(real_dir))
			real_dir[0] = '\0';
		base = base_name(real_dir);
		if (strcmp(base, ".") == 0 && getcwd(real_dir, sizeof(real_dir)) != NULL)
			base = base_name(real_dir);
		if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
		    snprintf(default_out, sizeof(default_out), "%s.zip", base) >=
			    (int)sizeof(default_out)) {
			fprintf(stderr,
				"coldboot: error: cannot name the zip after %s; use -o OUT.zip\n",
				dir);
			return 2;
		}
		out = default_out;
	}
	if (cb_cold_load(&ops, &err) != CB_OK)
		return fail(&err);
	memset(&req, 0, sizeof(req));
	req.src_dir = dir;
	req.out_path = out;
	if (ops->pack(&req, &res, &err) != CB_OK)
		return fail(&err);
	{
		char sum[CB_CHECKSUM_TEXT_MAX];

		cb_checksum_format(&res.checksum, sum, sizeof(sum));
		fprintf(stderr,
			"coldboot: packed %llu files, %llu folders, %llu symlinks (%llu bytes) "
			"into %s: %llu bytes%s\n",
			(unsigned long long)res.files, (unsigned long long)res.dirs,
			(unsigned long long)res.symlinks, (unsigned long long)res.input_bytes, out,
			(unsigned long long)res.zip_bytes, res.zip64 ? " (zip64)" : "");
		printf("COLDBOOT_URL=s3://YOUR-BUCKET/%s\n", base_name(out));
		printf("COLDBOOT_CHECKSUM=%s\n", sum);
	}
	return 0;
}

static void record_start(const struct cb_config *cfg, const struct cb_ensure_result *res,
			 int64_t start_wall_ms, const struct cb_error *err)
{
	struct cb_start_record record;
	struct cb_error emit_err;

	if (!cfg->stats_enabled)
		return;
	memset(&record, 0, sizeof(record));
	record.ts_ms = start_wall_ms;
	record.container = res->have_container ? &res->container : NULL;
	record.outcome = res->outcome;
	record.digest = cfg->have_checksum ? cfg->checksum.hex : NULL;
	record.error_kind = err->code != CB_OK ? cb_status_name(err->code) : NULL;
	record.bytes = res->install.download_bytes;
	record.files = res->install.files;
	record.attempts = res->install.attempts;
	record.fetch_ms = res->install.fetch_ms;
	record.verify_ms = res->install.verify_ms;
	record.unpack_ms = res->install.unpack_ms;
	record.lock_wait_ms = res->lock_wait_ms;
	record.total_ms = res->total_ms;
	if (cb_stats_emit(cfg->stats_file, &record, &emit_err) != CB_OK)
		cb_log(CB_LOG_WARN, "cannot record stats: %s", emit_err.message);
}

/* A failure before the handler runs; on Lambda, also posted to the Runtime API. */
static int fail_start(const struct cb_config *cfg, const struct cb_error *err)
{
	if (cb_lambda_runtime_should_report(cfg))
		cb_lambda_runtime_report_init_error(err);
	return fail(err);
}

static int run_extension(struct cb_config *cfg)
{
	struct cb_extension_result res;
	struct cb_error err;

	cb_error_init(&err);
	if (cb_extension_run(cfg, &res, &err) != CB_OK)
		return fail(&err);
	cb_log(CB_LOG_DEBUG, "extension: %llu invocations in %lld ms, shutdown reason %s",
	       (unsigned long long)res.invocations, (long long)res.alive_ms,
	       res.shutdown_reason[0] != '\0' ? res.shutdown_reason : "unknown");
	return 0;
}

/* The wrapper form, the custom runtime and `ensure`: the data path of DESIGN.md. */
static int run_ensure(struct cb_config *cfg)
{
	struct cb_ensure_result res;
	struct cb_error err;
	int64_t start_wall_ms = cb_clock_wall_ms();

	enum cb_status status;

	cb_error_init(&err);
	memset(&res, 0, sizeof(res));
	res.outcome = CB_OUTCOME_ERROR;
	status = cb_config_require_bundle(cfg, &err);
	if (status == CB_OK)
		status = cb_ensure_bundle(cfg, &res, &err);
	/* The returned status decides; err may hold a reason a retry overcame. */
	if (status == CB_OK)
		cb_error_init(&err);
	else
		err.code = status;
	record_start(cfg, &res, start_wall_ms, &err);
	if (status != CB_OK)
		return fail_start(cfg, &err);
	if (cfg->command == CB_CMD_ENSURE) {
		printf("%s\n", res.bundle_dir);
		return 0;
	}
	if (cfg->command == CB_CMD_RUNTIME)
		cb_lambda_runtime_exec(cfg, res.bundle_dir, &err);
	else
		cb_run_handler(res.bundle_dir, cfg->args, &err);
	return fail_start(cfg, &err);
}

int main(int argc, char **argv)
{
	struct cb_config cfg;
	struct cb_error err;

	cb_error_init(&err);
	if (cb_config_parse(argc, argv, &cfg, &err) != CB_OK)
		return fail_start(&cfg, &err);
	switch (cfg.command) {
	case CB_CMD_HELP:
		return print_help(cfg.help_for);
	case CB_CMD_VERSION:
		printf("coldboot %s\n", COLDBOOT_VERSION);
		return 0;
	case CB_CMD_HASH:
		return run_hash(&cfg);
	case CB_CMD_PACK:
		return run_pack(&cfg);
	case CB_CMD_EXTENSION:
		return run_extension(&cfg);
	case CB_CMD_STATS:
		return cb_stats_cmd_main(argc - 1, argv + 1);
	case CB_CMD_STATUS:
		if (cb_status_cmd_run(&cfg, &err) != CB_OK)
			return fail(&err);
		return 0;
	case CB_CMD_RUN:
	case CB_CMD_ENSURE:
	case CB_CMD_RUNTIME:
		break;
	}
	return run_ensure(&cfg);
}
