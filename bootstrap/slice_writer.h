/*
 * A writer thread for one big file. The extractor inflates a big entry a
 * slice at a time; with this, a thread of its own takes each slice (CRC-32,
 * then write) while the extractor inflates the next, so the file costs
 * max(inflating, writing) instead of their sum.
 */
#ifndef CB_SLICE_WRITER_H
#define CB_SLICE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cb_slice_writer;

/*
 * Starts a writer appending to fd, over nslots (2 or more) slices of
 * slot_bytes each at buf, which the caller owns and keeps until _finish.
 * NULL when there are too few slots or no thread to be had: the caller then
 * writes itself.
 */
struct cb_slice_writer *cb_slice_writer_start(int fd, unsigned char *buf, size_t slot_bytes,
					      size_t nslots);

/*
 * The next slice to fill (slot_bytes of room), once the thread is done with
 * it; NULL when a write has failed (nothing more will be written).
 */
unsigned char *cb_slice_writer_next(struct cb_slice_writer *wr);

/* Hands the slice _next returned over to be written, with len bytes in it. */
void cb_slice_writer_put(struct cb_slice_writer *wr, size_t len);

/*
 * Ends the thread and frees wr: after writing every slice handed over, or,
 * with abandon, as soon as it can. Returns 0, or the errno of the write that
 * failed (ENOSPC for a write that wrote nothing). *crc: the CRC-32 of the
 * bytes written.
 */
int cb_slice_writer_finish(struct cb_slice_writer *wr, bool abandon, uint32_t *crc);

#endif
