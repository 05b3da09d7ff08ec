/* Checksums computed while the bytes stream by. The only user of xxhash.h. */
#ifndef CB_VERIFY_H
#define CB_VERIFY_H

#include <stddef.h>

#include "../cache/cache.h"

struct cb_hasher;

/* Creates a hasher for algo; NULL when out of memory. Free with cb_hasher_destroy. */
struct cb_hasher *cb_hasher_new(enum cb_hash_algo algo);
void cb_hasher_destroy(struct cb_hasher *hasher);

/* Starts over from an empty input (used when a download restarts from byte 0). */
void cb_hasher_reset(struct cb_hasher *hasher);
void cb_hasher_update(struct cb_hasher *hasher, const void *data, size_t size);

/* Writes the digest of everything fed since the last reset into *out. */
void cb_hasher_final(struct cb_hasher *hasher, struct cb_checksum *out);

/* Hashes a whole file. Errors: CB_E_IO, CB_E_NOMEM. */
enum cb_status cb_verify_hash_file(const char *path, enum cb_hash_algo algo,
				   struct cb_checksum *out, struct cb_error *err);

#endif
