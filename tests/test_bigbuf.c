/* bootstrap/bigbuf.c: big buffers, zeroed, in huge pages where the kernel gives them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../bootstrap/bigbuf.h"

/* Every byte of [p, p + size) is zero, then takes a write and keeps it. */
static void check_usable(unsigned char *p, size_t size)
{
	assert_non_null(p);
	for (size_t i = 0; i < size; i += 997)
		assert_int_equal(p[i], 0);
	assert_int_equal(p[size - 1], 0);
	memset(p, 0xa5, size);
	assert_int_equal(p[0], 0xa5);
	assert_int_equal(p[size - 1], 0xa5);
}

static void sizes_below_and_above_a_huge_page(void **state)
{
	static const size_t sizes[] =
		{1, 4096, (2u << 20) - 1, 2u << 20, (3u << 20) + 123, 4u << 20, 9u << 20};

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *p = cb_bigbuf_alloc(sizes[i]);

		check_usable(p, sizes[i]);
		cb_bigbuf_free(p, sizes[i]);
	}
	cb_bigbuf_free(NULL, 4u << 20);
}

/* Outside AddressSanitizer, a big one starts on a 2 MiB boundary, where a huge page can go. */
static void big_ones_start_on_a_huge_page_boundary(void **state)
{
	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	skip();
#else
	for (int i = 0; i < 8; i++) {
		size_t size = (size_t)(i + 2) << 20;
		void *p = cb_bigbuf_alloc(size);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % (2u << 20), 0);
		cb_bigbuf_free(p, size);
	}
#endif
}

/* Zero even when the memory was used and given back just before. */
static void zeroed_after_reuse(void **state)
{
	(void)state;
	for (int round = 0; round < 4; round++) {
		size_t size = round % 2 ? 64u << 10 : 3u << 20;
		unsigned char *p = cb_bigbuf_alloc(size);

		check_usable(p, size);
		cb_bigbuf_free(p, size);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes_below_and_above_a_huge_page),
		cmocka_unit_test(big_ones_start_on_a_huge_page_boundary),
		cmocka_unit_test(zeroed_after_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
