/*
 * The `coldboot stats --svg` chart: a self-contained SVG timeline with one row
 * per container and one mark per start, coloured by outcome. No scripts, no
 * external fonts or images, so it renders the same anywhere.
 */
#ifndef CB_STATS_SVG_H
#define CB_STATS_SVG_H

#include <stddef.h>
#include <stdint.h>

#include "../cache/cache.h"

/* A mark that is not a start: the container's shutdown, from its lifetime record. */
#define CB_STATS_SVG_SHUTDOWN 5

/* One container. The arrays are borrowed and hold count marks each. */
struct cb_stats_svg_row {
	const char *label;
	const int64_t *ts_ms;          /* wall clock of each mark */
	const unsigned char *outcomes; /* enum cb_outcome of each start, or CB_STATS_SVG_SHUTDOWN */
	size_t count;
};

struct cb_stats_svg_chart {
	const char *title;
	const struct cb_stats_svg_row *rows;
	size_t row_count;
	size_t rows_omitted; /* containers left out to keep the file small; said in the chart */
	int has_shutdowns;   /* adds the shutdown mark to the legend */
	int64_t begin_ms;    /* the time axis */
	int64_t end_ms;
};

/*
 * Writes the chart to path (replacing it: written to a temporary file beside
 * it, then renamed). Errors: CB_E_IO with the path in the message.
 */
enum cb_status cb_stats_svg_write(const char *path, const struct cb_stats_svg_chart *chart,
				  struct cb_error *err);

#endif
