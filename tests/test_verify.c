/* bootstrap/verify.c: known XXH3-128 / XXH64 values, streaming equals one-shot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../bootstrap/verify.h"

/* Values printed by `xxhsum -H2` and `xxhsum -H1` (xxHash 0.8.1) for the same inputs. */
static void known_values(void **state)
{
	struct cb_hasher *hasher = cb_hasher_new(CB_HASH_XXH3_128);
	struct cb_checksum sum;

	(void)state;
	assert_non_null(hasher);
	cb_hasher_final(hasher, &sum);
	assert_string_equal(sum.hex, "99aa06d3014798d86001c324468d497f");
	cb_hasher_update(hasher, "abc", 3);
	cb_hasher_final(hasher, &sum);
	assert_string_equal(sum.hex, "06b05ab6733a618578af5f94892f3950");
	cb_hasher_destroy(hasher);

	hasher = cb_hasher_new(CB_HASH_XXH64);
	assert_non_null(hasher);
	cb_hasher_update(hasher, "abc", 3);
	cb_hasher_final(hasher, &sum);
	assert_string_equal(sum.hex, "44bc2cf5ad770999");
	cb_hasher_destroy(hasher);
}

static void streaming_and_reset(void **state)
{
	enum {
		SIZE = 1000003
	};
	unsigned char *data = malloc(SIZE);
	struct cb_hasher *one = cb_hasher_new(CB_HASH_XXH3_128);
	struct cb_hasher *many = cb_hasher_new(CB_HASH_XXH3_128);
	struct cb_checksum a, b;

	(void)state;
	assert_non_null(data);
	for (size_t i = 0; i < SIZE; i++)
		data[i] = (unsigned char)(i * 2654435761u >> 24);
	cb_hasher_update(one, data, SIZE);
	cb_hasher_update(many, "garbage", 7);
	cb_hasher_reset(many);
	for (size_t off = 0; off < SIZE; off += 4097)
		cb_hasher_update(many, data + off, SIZE - off < 4097 ? SIZE - off : 4097);
	cb_hasher_final(one, &a);
	cb_hasher_final(many, &b);
	assert_true(cb_checksum_equal(&a, &b));
	cb_hasher_destroy(one);
	cb_hasher_destroy(many);
	free(data);
}

static void hashes_a_file(void **state)
{
	char path[] = "/tmp/cb_test_verify_XXXXXX";
	int fd = mkstemp(path);
	struct cb_checksum sum;
	struct cb_error err;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	close(fd);
	assert_int_equal(cb_verify_hash_file(path, CB_HASH_XXH3_128, &sum, &err), CB_OK);
	assert_string_equal(sum.hex, "06b05ab6733a618578af5f94892f3950");
	unlink(path);
	assert_int_equal(cb_verify_hash_file(path, CB_HASH_XXH3_128, &sum, &err), CB_E_IO);
	assert_non_null(strstr(err.message, path));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_values),
		cmocka_unit_test(streaming_and_reset),
		cmocka_unit_test(hashes_a_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
