/*
 * Raw deflate (zip method 8) and CRC-32. For the extractor: libdeflate for an
 * entry held whole in memory, ISA-L's igzip for one streamed in chunks. For
 * `coldboot pack`: a zlib compressor. The only file that includes
 * libdeflate.h, isa-l/igzip_lib.h and zlib.h.
 */
#ifndef CB_INFLATE_H
#define CB_INFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../cache/cb_error.h"

/* One thread's decompressor state; not to be shared between threads. */
struct cb_inflate;

/* A new state, or NULL when out of memory. The caller destroys it. */
struct cb_inflate *cb_inflate_new(void);
void cb_inflate_destroy(struct cb_inflate *inf);

/* Continues a CRC-32 (start from 0) over len bytes. */
uint32_t cb_inflate_crc32(uint32_t crc, const void *p, size_t len);

/*
 * Inflates the raw deflate stream in[0..in_len) into exactly out_len bytes
 * at out. Errors (CB_E_ZIP, with the rule as the message, e.g. "data
 * inflates past its declared size"): the stream yields fewer or more bytes
 * than out_len, or is not valid deflate data.
 */
enum cb_status cb_inflate_whole(struct cb_inflate *inf, const void *in, size_t in_len, void *out,
				size_t out_len, struct cb_error *err);

/*
 * Streaming, for entries too big to hold whole: begin, then step with the
 * next compressed bytes until *done. Each step consumes what it can of the
 * input (advancing the pointer and shrinking the length) and writes up to
 * out_avail bytes at out, telling how many in *out_len. A step that needs
 * more input consumes it all; a stream that ends sets *done.
 * Errors: CB_E_ZIP (invalid deflate data), CB_E_NOMEM.
 */
enum cb_status cb_inflate_stream_begin(struct cb_inflate *inf, struct cb_error *err);
enum cb_status cb_inflate_stream_step(struct cb_inflate *inf, const unsigned char **in,
				      size_t *in_len, unsigned char *out, size_t out_avail,
				      size_t *out_len, bool *done, struct cb_error *err);

/* A raw deflate compressor (zlib), for pack; not to be shared between threads. */
struct cb_deflate;

/* A compressor at level (1-9), or NULL when out of memory. The caller destroys it. */
struct cb_deflate *cb_deflate_new(int level);
void cb_deflate_destroy(struct cb_deflate *def);

/* Starts a new stream (a new entry). Errors: CB_E_IO. */
enum cb_status cb_deflate_reset(struct cb_deflate *def, struct cb_error *err);

/*
 * Compresses in[0..in_len); with finish, also ends the stream. Every piece of
 * output produced goes to emit(ctx, ...), which may fail (its status is
 * returned). Errors: CB_E_IO (zlib failed), or emit's.
 */
enum cb_status cb_deflate_feed(struct cb_deflate *def, const void *in, size_t in_len, bool finish,
			       enum cb_status (*emit)(void *ctx, const void *out, size_t len),
			       void *ctx, struct cb_error *err);

#endif
