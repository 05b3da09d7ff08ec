#include "cache.h"

#include <stdio.h>
#include <time.h>

int64_t cb_clock_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cb_clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm). glibc's
 * gmtime_r reads /etc/localtime and mallocs on first use, which the warm path
 * cannot afford; UTC needs no time zone data at all.
 */
static void civil_from_days(int64_t days, int *year, int *month, int *day)
{
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;

	*year = (int)(yoe + era * 400 + (m <= 2));
	*month = (int)m;
	*day = (int)d;
}

void cb_clock_format_rfc3339(int64_t wall_ms, char *out, size_t out_size)
{
	int64_t secs = wall_ms >= 0 ? wall_ms / 1000 : (wall_ms - 999) / 1000;
	int64_t ms = wall_ms - secs * 1000;
	int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
	int64_t rem = secs - days * 86400;
	int year, month, day;

	civil_from_days(days, &year, &month, &day);
	snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, month, day,
		 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)ms);
}
