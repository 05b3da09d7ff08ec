/* Helpers shared by the cmocka unit tests: scratch folders and an in-memory sink. */
#ifndef CB_UNIT_H
#define CB_UNIT_H

#include <stddef.h>

#include "../bootstrap/fetch.h"

/*
 * Creates a fresh folder "<prefix>-XXXXXX" under $CB_TEST_TMP (or /tmp) and
 * writes its path to out. Returns 0, or -1 when it cannot (path too long,
 * mkdtemp failed). The folder is 0700, which cb_cache_open accepts.
 */
int cb_test_make_dir(char *out, size_t out_size, const char *prefix);

/* Removes path and everything below it, without following symlinks. */
void cb_test_remove_tree(const char *path);

/* A growing in-memory body for cb_fetch_to_sink; fail_after > 0 makes it "full" past that size. */
struct cb_test_mem_sink {
	unsigned char *data; /* owned; freed by cb_test_mem_sink_free */
	size_t size;
	size_t capacity;
	size_t fail_after;
	unsigned restarts; /* how often the fetcher restarted the body from byte 0 */
};

/* Points sink at mem, which starts zeroed ({0}) or with only fail_after set. */
void cb_test_mem_sink_attach(struct cb_test_mem_sink *mem, struct cb_sink *sink);
void cb_test_mem_sink_free(struct cb_test_mem_sink *mem);

#endif
