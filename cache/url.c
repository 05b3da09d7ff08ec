#include "cache.h"

#include <string.h>

void cb_url_redact(const char *url, char *out, size_t out_size)
{
	const char *scheme_end = strstr(url, "://");
	const char *host = scheme_end != NULL ? scheme_end + 3 : url;
	const char *path = host + strcspn(host, "/?#");
	const char *at = NULL;
	size_t n = 0;

	if (out_size == 0)
		return;
	/* userinfo can only appear in the authority, before the path. */
	for (const char *p = host; p < path; p++)
		if (*p == '@')
			at = p;
	if (at != NULL)
		host = at + 1;

#define CB_APPEND(ptr, len)                                                         \
	do {                                                                        \
		size_t take_ = (len) < out_size - 1 - n ? (len) : out_size - 1 - n; \
		memcpy(out + n, (ptr), take_);                                      \
		n += take_;                                                         \
	} while (0)

	CB_APPEND(url, (size_t)(scheme_end != NULL ? scheme_end + 3 - url : 0));
	CB_APPEND(host, (size_t)(path - host));
	{
		size_t path_len = strcspn(path, "?#");

		CB_APPEND(path, path_len);
		if (path[path_len] != '\0')
			CB_APPEND("?<redacted>", sizeof("?<redacted>") - 1);
	}
#undef CB_APPEND
	out[n] = '\0';
}
