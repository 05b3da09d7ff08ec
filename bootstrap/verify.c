/* XXH3-128 and XXH64 over streamed bytes. The only file that includes xxhash.h. */
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

struct cb_hasher {
	enum cb_hash_algo algo;
	XXH3_state_t *xxh3;
	XXH64_state_t *xxh64;
};

struct cb_hasher *cb_hasher_new(enum cb_hash_algo algo)
{
	struct cb_hasher *hasher = calloc(1, sizeof(*hasher));

	if (hasher == NULL)
		return NULL;
	hasher->algo = algo;
	if (algo == CB_HASH_XXH64)
		hasher->xxh64 = XXH64_createState();
	else
		hasher->xxh3 = XXH3_createState();
	if (hasher->xxh3 == NULL && hasher->xxh64 == NULL) {
		free(hasher);
		return NULL;
	}
	cb_hasher_reset(hasher);
	return hasher;
}

void cb_hasher_destroy(struct cb_hasher *hasher)
{
	if (hasher == NULL)
		return;
	if (hasher->xxh3 != NULL)
		XXH3_freeState(hasher->xxh3);
	if (hasher->xxh64 != NULL)
		XXH64_freeState(hasher->xxh64);
	free(hasher);
}

void cb_hasher_reset(struct cb_hasher *hasher)
{
	if (hasher->algo == CB_HASH_XXH64)
		(void)XXH64_reset(hasher->xxh64, 0);
	else
		(void)XXH3_128bits_reset(hasher->xxh3);
}

void cb_hasher_update(struct cb_hasher *hasher, const void *data, size_t size)
{
	if (hasher->algo == CB_HASH_XXH64)
		(void)XXH64_update(hasher->xxh64, data, size);
	else
		(void)XXH3_128bits_update(hasher->xxh3, data, size);
}

void cb_hasher_final(struct cb_hasher *hasher, struct cb_checksum *out)
{
	if (hasher->algo == CB_HASH_XXH64) {
		XXH64_canonical_t canonical;

		XXH64_canonicalFromHash(&canonical, XXH64_digest(hasher->xxh64));
		cb_checksum_set_bytes(out, CB_HASH_XXH64, canonical.digest,
				      sizeof(canonical.digest));
	} else {
		XXH128_canonical_t canonical;

		XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(hasher->xxh3));
		cb_checksum_set_bytes(out, CB_HASH_XXH3_128, canonical.digest,
				      sizeof(canonical.digest));
	}
}

enum cb_status cb_verify_hash_file(const char *path, enum cb_hash_algo algo,
				   struct cb_checksum *out, struct cb_error *err)
{
	enum {
		BUFFER_BYTES = 1 << 20
	};
	struct cb_hasher *hasher = NULL;
	unsigned char *buffer = NULL;
	enum cb_status status = CB_OK;
	int fd = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		status = cb_error_set(err, CB_E_IO, errno, "cannot open %s: %s", path,
				      strerror(errno));
		goto out;
	}
	hasher = cb_hasher_new(algo);
	buffer = malloc(BUFFER_BYTES);
	if (hasher == NULL || buffer == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory hashing %s", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buffer, BUFFER_BYTES);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			status = cb_error_set(err, CB_E_IO, errno, "cannot read %s: %s", path,
					      strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		cb_hasher_update(hasher, buffer, (size_t)n);
	}
	cb_hasher_final(hasher, out);
out:
	free(buffer);
	cb_hasher_destroy(hasher);
	if (fd >= 0)
		close(fd);
	return status;
}
