/*
 * Big buffers (a worker's input and output, a part of the download) in
 * transparent huge pages where the kernel gives them for the asking (THP
 * "madvise" mode). In a VM, the first touch of fresh memory can cost ~10 us
 * per 4 KiB page (the host maps it in), so a cold start spent tens of
 * milliseconds faulting in its buffers; with 2 MiB pages it is one fault per
 * 2 MiB. Elsewhere (THP "never", no MADV_HUGEPAGE) it is plain anonymous
 * memory, as malloc would give.
 */
#ifndef CB_BIGBUF_H
#define CB_BIGBUF_H

#include <stddef.h>

/*
 * size bytes, zeroed, NULL when out of memory. Only whole 2 MiB stretches inside
 * [p, p + size) are asked for as huge pages, so what it can make resident
 * is never more than size (rounded up to 4 KiB).
 */
void *cb_bigbuf_alloc(size_t size);
/* p from cb_bigbuf_alloc(size), with the same size; NULL is ignored. */
void cb_bigbuf_free(void *p, size_t size);

#endif
