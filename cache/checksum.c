#include "cache.h"

#include <string.h>

static const char HOW_TO_GET[] =
	"get one with `coldboot hash bundle.zip` (or `xxhsum -H2 bundle.zip`)";

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void cb_checksum_set_bytes(struct cb_checksum *sum, enum cb_hash_algo algo,
			   const unsigned char *bytes, size_t size_bytes)
{
	static const char digits[] = "0123456789abcdef";

	sum->algo = algo;
	sum->size_bytes = size_bytes;
	memcpy(sum->bytes, bytes, size_bytes);
	for (size_t i = 0; i < size_bytes; i++) {
		sum->hex[2 * i] = digits[bytes[i] >> 4];
		sum->hex[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	sum->hex[2 * size_bytes] = '\0';
}

enum cb_status cb_checksum_parse(const char *text, struct cb_checksum *out, struct cb_error *err)
{
	unsigned char bytes[CB_CHECKSUM_MAX_BYTES];
	enum cb_hash_algo algo;
	const char *hex;
	size_t size_bytes;

	if (text == NULL || text[0] == '\0')
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "no checksum: pass --checksum xxh3:<32 hex> or set COLDBOOT_CHECKSUM; %s",
				    HOW_TO_GET);
	if (strncmp(text, "xxh3:", 5) == 0) {
		algo = CB_HASH_XXH3_128;
		size_bytes = 16;
		hex = text + 5;
	} else if (strncmp(text, "xxh64:", 6) == 0) {
		algo = CB_HASH_XXH64;
		size_bytes = 8;
		hex = text + 6;
	} else {
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "checksum must start with \"xxh3:\" or \"xxh64:\"; %s",
				    HOW_TO_GET);
	}
	if (strlen(hex) != 2 * size_bytes)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "checksum \"%.60s\" must have %zu hex digits after the colon; %s",
				    text, 2 * size_bytes, HOW_TO_GET);
	for (size_t i = 0; i < size_bytes; i++) {
		int hi = hex_value(hex[2 * i]);
		int lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "checksum \"%.60s\" has a character that is not hex; %s",
					    text, HOW_TO_GET);
		bytes[i] = (unsigned char)(hi << 4 | lo);
	}
	cb_checksum_set_bytes(out, algo, bytes, size_bytes);
	return CB_OK;
}

void cb_checksum_format(const struct cb_checksum *sum, char *out, size_t out_size)
{
	const char *prefix = sum->algo == CB_HASH_XXH64 ? "xxh64" : "xxh3";
	size_t need = strlen(prefix) + 1 + 2 * sum->size_bytes + 1;

	if (out_size < need) {
		if (out_size > 0)
			out[0] = '\0';
		return;
	}
	strcpy(out, prefix);
	strcat(out, ":");
	strcat(out, sum->hex);
}

int cb_checksum_equal(const struct cb_checksum *a, const struct cb_checksum *b)
{
	return a->algo == b->algo && a->size_bytes == b->size_bytes &&
	       memcmp(a->bytes, b->bytes, a->size_bytes) == 0;
}
