/* See slice_writer.h. One filler, one writer, a ring of slices between them. */
#include "slice_writer.h"

#include "../cache/cache.h"
#include "inflate.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define SLICE_WRITER_SLOTS_MAX 4u

struct cb_slice_writer {
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a slice was handed over or written, or the end came */
	pthread_t thread;
	int fd;
	unsigned char *buf;
	size_t slot_bytes, nslots;
	size_t len[SLICE_WRITER_SLOTS_MAX];
	size_t fill;   /* the slot the filler fills next */
	size_t write;  /* the slot the thread writes next */
	size_t queued; /* slices handed over and not written yet */
	bool closing, abandon;
	int failed_errno; /* 0 while every write succeeded */
	uint32_t crc;
};

static void *writer_run(void *arg)
{
	struct cb_slice_writer *wr = arg;

	pthread_mutex_lock(&wr->lock);
	for (;;) {
		const unsigned char *p;
		size_t len;
		int saved;

		while (wr->queued == 0 && !wr->closing)
			pthread_cond_wait(&wr->changed, &wr->lock);
		if (wr->queued == 0 || wr->abandon)
			break;
		p = wr->buf + wr->write * wr->slot_bytes;
		len = wr->len[wr->write];
		pthread_mutex_unlock(&wr->lock);

		/* The filler never touches a queued slice: these run unlocked. */
		wr->crc = cb_inflate_crc32(wr->crc, p, len);
		saved = cb_write_full(wr->fd, p, len, -1);

		pthread_mutex_lock(&wr->lock);
		wr->write = (wr->write + 1) % wr->nslots;
		wr->queued--;
		if (saved != 0)
			wr->failed_errno = saved;
		pthread_cond_broadcast(&wr->changed);
		if (saved != 0)
			break;
	}
	pthread_mutex_unlock(&wr->lock);
	return NULL;
}

struct cb_slice_writer *cb_slice_writer_start(int fd, unsigned char *buf, size_t slot_bytes,
					      size_t nslots)
{
	struct cb_slice_writer *wr;

	if (nslots < 2)
		return NULL;
	if (nslots > SLICE_WRITER_SLOTS_MAX)
		nslots = SLICE_WRITER_SLOTS_MAX;
	wr = calloc(1, sizeof(*wr));
	if (wr == NULL)
		return NULL;
	wr->fd = fd;
	wr->buf = buf;
	wr->slot_bytes = slot_bytes;
	wr->nslots = nslots;
	if (pthread_mutex_init(&wr->lock, NULL) != 0) {
		free(wr);
		return NULL;
	}
	if (pthread_cond_init(&wr->changed, NULL) != 0) {
		pthread_mutex_destroy(&wr->lock);
		free(wr);
		return NULL;
	}
	if (pthread_create(&wr->thread, NULL, writer_run, wr) != 0) {
		pthread_cond_destroy(&wr->changed);
		pthread_mutex_destroy(&wr->lock);
		free(wr);
		return NULL;
	}
	return wr;
}

unsigned char *cb_slice_writer_next(struct cb_slice_writer *wr)
{
	unsigned char *slot = NULL;

	pthread_mutex_lock(&wr->lock);
	while (wr->queued == wr->nslots && wr->failed_errno == 0)
		pthread_cond_wait(&wr->changed, &wr->lock);
	if (wr->failed_errno == 0)
		slot = wr->buf + wr->fill * wr->slot_bytes;
	pthread_mutex_unlock(&wr->lock);
	return slot;
}

void cb_slice_writer_put(struct cb_slice_writer *wr, size_t len)
{
	pthread_mutex_lock(&wr->lock);
	wr->len[wr->fill] = len;
	wr->fill = (wr->fill + 1) % wr->nslots;
	wr->queued++;
	pthread_cond_broadcast(&wr->changed);
	pthread_mutex_unlock(&wr->lock);
}

int cb_slice_writer_finish(struct cb_slice_writer *wr, bool abandon, uint32_t *crc)
{
	int failed;

	pthread_mutex_lock(&wr->lock);
	wr->closing = true;
	wr->abandon = abandon;
	pthread_cond_broadcast(&wr->changed);
	pthread_mutex_unlock(&wr->lock);
	pthread_join(wr->thread, NULL);
	failed = wr->failed_errno;
	*crc = wr->crc;
	pthread_cond_destroy(&wr->changed);
	pthread_mutex_destroy(&wr->lock);
	free(wr);
	return failed;
}
