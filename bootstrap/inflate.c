/*
 * Raw deflate and CRC-32 for the extractor. libdeflate inflates a whole
 * entry about 2.6 times faster than zlib here but cannot stream, so entries
 * too big for a thread's buffer go through ISA-L's igzip in chunks instead
 * (0.15 s for a 110 MB binary where zlib takes 0.31 s). zlib stays for
 * compressing, in pack.
 */
#include "inflate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#define ZLIB_CONST /* next_in is const: no cast away from our const input */
#include <zlib.h>

struct cb_inflate {
	struct libdeflate_decompressor *whole;
	struct inflate_state *stream; /* 85 KiB: only for a thread that streams */
};

struct cb_inflate *cb_inflate_new(void)
{
	struct cb_inflate *inf = calloc(1, sizeof(*inf));

	if (inf == NULL)
		return NULL;
	inf->whole = libdeflate_alloc_decompressor();
	if (inf->whole == NULL) {
		free(inf);
		return NULL;
	}
	return inf;
}

void cb_inflate_destroy(struct cb_inflate *inf)
{
	if (inf == NULL)
		return;
	free(inf->stream);
	libdeflate_free_decompressor(inf->whole);
	free(inf);
}

uint32_t cb_inflate_crc32(uint32_t crc, const void *p, size_t len)
{
	return libdeflate_crc32(crc, p, len);
}

enum cb_status cb_inflate_whole(struct cb_inflate *inf, const void *in, size_t in_len, void *out,
				size_t out_len, struct cb_error *err)
{
	/* Without an actual-size pointer, libdeflate insists on exactly out_len bytes. */
	switch (libdeflate_deflate_decompress(inf->whole, in, in_len, out, out_len, NULL)) {
	case LIBDEFLATE_SUCCESS:
		return CB_OK;
	case LIBDEFLATE_SHORT_OUTPUT:
		return cb_error_set(err, CB_E_ZIP, 0, "data shorter than its declared size");
	case LIBDEFLATE_INSUFFICIENT_SPACE:
		return cb_error_set(err, CB_E_ZIP, 0, "data inflates past its declared size");
	case LIBDEFLATE_BAD_DATA:
		break;
	}
	return cb_error_set(err, CB_E_ZIP, 0,
			    "cannot read its data: invalid or truncated deflate data");
}

enum cb_status cb_inflate_stream_begin(struct cb_inflate *inf, struct cb_error *err)
{
	if (inf->stream == NULL) {
		inf->stream = malloc(sizeof(*inf->stream));
		if (inf->stream == NULL)
			return cb_error_set(err, CB_E_NOMEM, 0, "unpack: out of memory");
	}
	/* Raw deflate (crc_flag ISAL_DEFLATE): no gzip or zlib wrapper. */
	isal_inflate_init(inf->stream);
	inf->stream->crc_flag = ISAL_DEFLATE;
	return CB_OK;
}

enum cb_status cb_inflate_stream_step(struct cb_inflate *inf, const unsigned char **in,
				      size_t *in_len, unsigned char *out, size_t out_avail,
				      size_t *out_len, bool *done, struct cb_error *err)
{
	struct inflate_state *st = inf->stream;
	/* ISA-L counts in uint32_t: hand it at most that much at a time. */
	uint32_t in_now = *in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)*in_len;
	uint32_t out_now = out_avail > UINT32_MAX ? UINT32_MAX : (uint32_t)out_avail;
	int rc;

	st->next_in = (uint8_t *)(uintptr_t)*in; /* only read, whatever its type says */
	st->avail_in = in_now;
	st->next_out = out;
	st->avail_out = out_now;
	rc = isal_inflate(st);
	*in += in_now - st->avail_in;
	*in_len -= in_now - st->avail_in;
	*out_len = out_now - st->avail_out;
	*done = st->block_state == ISAL_BLOCK_FINISH;
	/* OK, or it stopped at the end of the input or of the room: call again. */
	if (rc >= 0)
		return CB_OK;
	return cb_error_set(err, CB_E_ZIP, 0, "cannot read its data: invalid deflate data (%s)",
			    rc == ISAL_INVALID_BLOCK    ? "invalid block" :
			    rc == ISAL_INVALID_SYMBOL   ? "invalid symbol" :
			    rc == ISAL_INVALID_LOOKBACK ? "invalid distance" :
							  "igzip error");
}

/* ---- compressing, for pack ---- */

#define DEFLATE_OUT_BYTES (256u * 1024u)

struct cb_deflate {
	z_stream stream;
	unsigned char out[DEFLATE_OUT_BYTES];
};

struct cb_deflate *cb_deflate_new(int level)
{
	struct cb_deflate *def = calloc(1, sizeof(*def));

	if (def == NULL)
		return NULL;
	/* Negative window bits: raw deflate, as zip stores it. */
	if (deflateInit2(&def->stream, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK) {
		free(def);
		return NULL;
	}
	return def;
}

void cb_deflate_destroy(struct cb_deflate *def)
{
	if (def == NULL)
		return;
	deflateEnd(&def->stream);
	free(def);
}

enum cb_status cb_deflate_reset(struct cb_deflate *def, struct cb_error *err)
{
	if (deflateReset(&def->stream) != Z_OK)
		return cb_error_set(err, CB_E_IO, 0, "deflate failed to reset");
	return CB_OK;
}

enum cb_status cb_deflate_feed(struct cb_deflate *def, const void *in, size_t in_len, bool finish,
			       enum cb_status (*emit)(void *ctx, const void *out, size_t len),
			       void *ctx, struct cb_error *err)
{
	z_stream *zs = &def->stream;
	const unsigned char *p = in;

	/* zlib counts in uInt: hand it at most that much at a time. */
	do {
		size_t take = in_len < UINT_MAX ? in_len : UINT_MAX;
		int flush = finish && take == in_len ? Z_FINISH : Z_NO_FLUSH;

		zs->next_in = p;
		zs->avail_in = (uInt)take;
		p += take;
		in_len -= take;
		for (;;) {
			enum cb_status status;
			size_t produced;
			int rc;

			zs->next_out = def->out;
			zs->avail_out = DEFLATE_OUT_BYTES;
			rc = deflate(zs, flush);
			if (rc == Z_STREAM_ERROR)
				return cb_error_set(err, CB_E_IO, 0, "deflate failed");
			produced = DEFLATE_OUT_BYTES - zs->avail_out;
			if (produced > 0) {
				status = emit(ctx, def->out, produced);
				if (status != CB_OK)
					return status;
			}
			if (flush == Z_FINISH ? rc == Z_STREAM_END : zs->avail_out != 0)
				break;
		}
	} while (in_len > 0);
	return CB_OK;
}
