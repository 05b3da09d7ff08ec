#include "status_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct list_ctx {
	const char *current; /* "bundles/<digest>" or "" */
	unsigned count;
};

static void print_bundle(void *ctx_ptr, const char *digest, int dir_fd)
{
	struct list_ctx *ctx = ctx_ptr;
	struct cb_marker marker;
	struct cb_error err;
	char when[40];
	int is_current =
		strncmp(ctx->current, "bundles/", 8) == 0 && strcmp(ctx->current + 8, digest) == 0;

	ctx->count++;
	if (dir_fd < 0 || cb_marker_read(dir_fd, &marker, &err) != CB_OK) {
		printf("bundle %s: no valid marker (will be replaced at the next install)%s\n",
		       digest, is_current ? " [current]" : "");
		return;
	}
	cb_clock_format_rfc3339(marker.installed_at_ms, when, sizeof(when));
	printf("bundle %s: %s, %" PRIu64 " bytes downloaded, %" PRIu64 " bytes in %" PRIu64
	       " entries, installed %s in %" PRId64 " ms from %s%s\n",
	       digest, marker.checksum, marker.bytes, marker.unpacked_bytes, marker.files, when,
	       marker.fetch_ms + marker.unpack_ms, marker.url, is_current ? " [current]" : "");
}

enum cb_status cb_status_cmd_run(const struct cb_config *cfg, struct cb_error *err)
{
	struct cb_cache cache;
	struct cb_container container;
	struct cb_error read_err;
	struct list_ctx ctx = {"", 0};
	char current[PATH_MAX];
	enum cb_status status;

	/* Looking must not create: no cache yet is an answer, not an error. */
	if (access(cfg->dir, F_OK) != 0 && errno == ENOENT) {
		printf("cache: %s does not exist (no start has run with it)\n", cfg->dir);
		fflush(stdout);
		return CB_OK;
	}
	status = cb_cache_open(&cache, cfg->dir, err);
	if (status != CB_OK)
		return status;
	printf("cache: %s\n", cache.root);
	if (cb_container_read(&cache, &container, &read_err) == CB_OK) {
		char first[40];

		cb_clock_format_rfc3339(container.first_start_ms, first, sizeof(first));
		printf("container: %s, first start %s, %" PRIu64 " starts, %" PRIu64 " downloads\n",
		       container.id, first, container.starts, container.downloads);
	} else {
		printf("container: none yet (no start has run with this cache)\n");
	}
	cb_cache_current(&cache, current, sizeof(current));
	printf("current: %s\n", current[0] != '\0' ? current : "none");
	ctx.current = current;
	status = cb_cache_each_bundle(&cache, print_bundle, &ctx, err);
	if (status == CB_OK && ctx.count == 0)
		printf("bundles: none\n");
	if (status == CB_OK && cfg->checksum_text != NULL) {
		struct cb_checksum sum;
		enum cb_bundle_state state;
		char dir[PATH_MAX];

		status = cb_checksum_parse(cfg->checksum_text, &sum, err);
		if (status == CB_OK)
			status = cb_cache_lookup(&cache, &sum, &state, dir, sizeof(dir), err);
		if (status == CB_OK)
			printf("configured bundle %s: %s\n", sum.hex,
			       state == CB_BUNDLE_PUBLISHED ? "published" :
			       state == CB_BUNDLE_CORRUPT   ? "corrupt (will be repaired)" :
							      "not installed");
	}
	fflush(stdout);
	cb_cache_close(&cache);
	return status;
}
