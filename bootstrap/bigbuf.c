/* See bigbuf.h. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#include "bigbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define BIGBUF_HUGE_BYTES ((size_t)2 << 20)

/* Under AddressSanitizer, malloc: its redzones catch what overruns a buffer. */
#if defined(__SANITIZE_ADDRESS__)
#define BIGBUF_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BIGBUF_PLAIN 1
#endif
#endif

#ifndef BIGBUF_PLAIN
static size_t page_round_up(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (size + page - 1) / page * page;
}
#endif

void *cb_bigbuf_alloc(size_t size)
{
#ifdef BIGBUF_PLAIN
	return calloc(size ? size : 1, 1);
#else
	size_t len, head;
	unsigned char *raw, *p;

	if (size < BIGBUF_HUGE_BYTES)
		return calloc(size ? size : 1, 1);
	len = page_round_up(size);
	/* Room to start on a 2 MiB boundary; the unaligned ends go back at once. */
	raw = mmap(NULL, len + BIGBUF_HUGE_BYTES, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	head = (BIGBUF_HUGE_BYTES - (uintptr_t)raw % BIGBUF_HUGE_BYTES) % BIGBUF_HUGE_BYTES;
	p = raw + head;
	if (head > 0)
		munmap(raw, head);
	munmap(p + len, BIGBUF_HUGE_BYTES - head);
#ifdef MADV_HUGEPAGE
	/* Advice only: where THP is off, nothing changes. */
	(void)madvise(p, size / BIGBUF_HUGE_BYTES * BIGBUF_HUGE_BYTES, MADV_HUGEPAGE);
#endif
	return p;
#endif
}

void cb_bigbuf_free(void *p, size_t size)
{
	if (p == NULL)
		return;
#ifndef BIGBUF_PLAIN
	if (size >= BIGBUF_HUGE_BYTES) {
		munmap(p, page_round_up(size));
		return;
	}
#endif
	(void)size;
	free(p);
}
