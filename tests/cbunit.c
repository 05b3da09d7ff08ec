#define _GNU_SOURCE /* nftw */
#include "cbunit.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cb_test_make_dir(char *out, size_t out_size, const char *prefix)
{
	const char *base = getenv("CB_TEST_TMP");
	int n;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	(void)mkdir(base, 0755);
	n = snprintf(out, out_size, "%s/%s-XXXXXX", base, prefix);
	/* Room is left for the names tests put below it. */
	if (n < 0 || (size_t)n + 64 >= out_size)
		return -1;
	return mkdtemp(out) != NULL ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	/* Read-only folders (a test of modes) must become writable to be emptied. */
	if (type == FTW_DP)
		(void)chmod(path, 0700);
	return remove(path);
}

void cb_test_remove_tree(const char *path)
{
	(void)nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static enum cb_status mem_write(void *ctx, const void *data, size_t size, struct cb_error *err)
{
	struct cb_test_mem_sink *mem = ctx;

	if (mem->fail_after > 0 && mem->size + size > mem->fail_after)
		return cb_error_set(err, CB_E_SPACE, ENOSPC, "test sink is full");
	if (mem->size + size > mem->capacity) {
		size_t capacity = mem->capacity != 0 ? mem->capacity : 65536;
		unsigned char *grown;

		while (capacity < mem->size + size)
			capacity *= 2;
		grown = realloc(mem->data, capacity);
		if (grown == NULL)
			return cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory");
		mem->data = grown;
		mem->capacity = capacity;
	}
	memcpy(mem->data + mem->size, data, size);
	mem->size += size;
	return CB_OK;
}

static enum cb_status mem_restart(void *ctx, struct cb_error *err)
{
	struct cb_test_mem_sink *mem = ctx;

	(void)err;
	mem->size = 0;
	mem->restarts++;
	return CB_OK;
}

void cb_test_mem_sink_attach(struct cb_test_mem_sink *mem, struct cb_sink *sink)
{
	sink->write = mem_write;
	sink->restart = mem_restart;
	sink->ctx = mem;
	sink->write_at = NULL;
	sink->room = NULL;
}

void cb_test_mem_sink_free(struct cb_test_mem_sink *mem)
{
	free(mem->data);
	mem->data = NULL;
	mem->size = mem->capacity = 0;
}
