#include "ensure.h"

#include <string.h>
#include <unistd.h>

struct room_ctx {
	struct cb_cache *cache;
	const struct cb_checksum *keep;
};

static enum cb_status make_room(void *ctx_ptr, uint64_t needed_bytes, uint64_t *free_bytes,
				struct cb_error *err)
{
	struct room_ctx *ctx = ctx_ptr;

	return cb_cache_evict(ctx->cache, ctx->keep, needed_bytes, free_bytes, err);
}

/* Installs into staging/<digest> and publishes it. Called with the lock held. */
static enum cb_status install_and_publish(struct cb_cache *cache, const struct cb_config *cfg,
					  int64_t deadline_ms, struct cb_ensure_result *res,
					  struct cb_error *err)
{
	const struct cb_cold_ops *ops = NULL;
	struct cb_install_request req;
	struct room_ctx room = {cache, &cfg->checksum};
	struct cb_marker marker;
	char staging_path[PATH_MAX];
	enum cb_status status;
	int staging_fd = -1;

	status = cb_cold_load(&ops, err);
	if (status != CB_OK)
		goto out;
	status = cb_staging_create(cache, &cfg->checksum, &staging_fd, staging_path,
				   sizeof(staging_path), err);
	if (status != CB_OK)
		goto out;

	memset(&req, 0, sizeof(req));
	req.url = cfg->url;
	req.checksum = &cfg->checksum;
	req.staging_fd = staging_fd;
	req.staging_path = staging_path;
	req.max_size_bytes = cfg->max_size_bytes;
	req.memory_budget_bytes = cfg->memory_budget_bytes;
	req.deadline_ms = deadline_ms;
	req.log_level = cfg->log_level;
	req.make_room = make_room;
	req.make_room_ctx = &room;
	status = ops->install(&req, &res->install, err);
	if (status != CB_OK)
		goto out;

	memset(&marker, 0, sizeof(marker));
	cb_url_redact(cfg->url, marker.url, sizeof(marker.url));
	cb_checksum_format(&cfg->checksum, marker.checksum, sizeof(marker.checksum));
	marker.bytes = res->install.download_bytes;
	marker.unpacked_bytes = res->install.unpacked_bytes;
	marker.files = res->install.files;
	marker.attempts = res->install.attempts;
	marker.fetch_ms = res->install.fetch_ms;
	marker.unpack_ms = res->install.unpack_ms;
	marker.installed_at_ms = cb_clock_wall_ms();
	/* The marker goes in before the rename, so a published bundle is always complete. */
	status = cb_marker_write(staging_fd, &marker, err);
	if (status != CB_OK)
		goto out;
	close(staging_fd);
	staging_fd = -1;
	status = cb_cache_publish(cache, &cfg->checksum, err);
out:
	if (staging_fd >= 0)
		close(staging_fd);
	if (status != CB_OK) {
		struct cb_error cleanup_err;

		/* The half-written tree goes now, not at the next start. */
		if (cb_staging_reset(cache, &cleanup_err) != CB_OK)
			cb_log(CB_LOG_WARN, "%s", cleanup_err.message);
	}
	return status;
}

/*
 * A start killed between publishing and the symlink swap leaves current
 * missing or stale; one readlink on the warm path notices and mends it.
 */
static enum cb_status repair_current(struct cb_cache *cache, const struct cb_config *cfg,
				     struct cb_ensure_result *res, struct cb_error *err)
{
	char current[PATH_MAX];
	enum cb_status status;

	cb_cache_current(cache, current, sizeof(current));
	if (strncmp(current, "bundles/", 8) == 0 && strcmp(current + 8, cfg->checksum.hex) == 0)
		return CB_OK;
	status = cb_lock_acquire(cache, cfg->lock_timeout_ms, &res->lock_wait_ms, err);
	if (status != CB_OK)
		return status;
	status = cb_cache_point_current(cache, &cfg->checksum, err);
	cb_lock_release(cache);
	return status;
}

enum cb_status cb_ensure_bundle(const struct cb_config *cfg, struct cb_ensure_result *res,
				struct cb_error *err)
{
	struct cb_cache cache;
	struct cb_error count_err;
	enum cb_bundle_state state;
	enum cb_status status;
	int64_t start_ms = cb_clock_now_ms();

	memset(res, 0, sizeof(*res));
	res->outcome = CB_OUTCOME_ERROR;
	status = cb_cache_open(&cache, cfg->dir, err);
	if (status != CB_OK)
		return status;
	/* Counting the start must never stop the handler from running. */
	if (cb_container_start(&cache, &res->container, &count_err) == CB_OK)
		res->have_container = 1;
	else
		cb_log(CB_LOG_WARN, "cannot count this start: %s", count_err.message);

	/* The warm path: one open and one small read. */
	status = cb_cache_lookup(&cache, &cfg->checksum, &state, res->bundle_dir,
				 sizeof(res->bundle_dir), err);
	if (status != CB_OK)
		goto out;
	if (state == CB_BUNDLE_PUBLISHED) {
		res->outcome = CB_OUTCOME_REUSE;
		status = repair_current(&cache, cfg, res, err);
		goto out;
	}

	status = cb_lock_acquire(&cache, cfg->lock_timeout_ms, &res->lock_wait_ms, err);
	if (status != CB_OK)
		goto out;
	/* Look again: the previous holder may have installed it meanwhile. */
	status = cb_cache_lookup(&cache, &cfg->checksum, &state, res->bundle_dir,
				 sizeof(res->bundle_dir), err);
	if (status != CB_OK)
		goto out;
	if (state == CB_BUNDLE_PUBLISHED) {
		res->outcome = CB_OUTCOME_WAITED;
		status = cb_cache_point_current(&cache, &cfg->checksum, err);
		goto out;
	}
	status = cb_staging_reset(&cache, err);
	if (status != CB_OK)
		goto out;
	if (state == CB_BUNDLE_CORRUPT) {
		status = cb_cache_discard(&cache, &cfg->checksum, err);
		if (status != CB_OK)
			goto out;
	}
	status = install_and_publish(&cache, cfg, start_ms + cfg->timeout_ms, res, err);
	if (status != CB_OK)
		goto out;
	res->outcome = state == CB_BUNDLE_CORRUPT ? CB_OUTCOME_REPAIR : CB_OUTCOME_DOWNLOAD;
	if (cb_container_count_download(&cache, &count_err) != CB_OK)
		cb_log(CB_LOG_WARN, "cannot count this download: %s", count_err.message);
	else
		res->container.downloads++;
out:
	cb_cache_close(&cache);
	res->total_ms = cb_clock_now_ms() - start_ms;
	if (status != CB_OK)
		res->outcome = CB_OUTCOME_ERROR;
	return status;
}
