/* The stats timeline as SVG; see stats_svg.h. */
#include "stats_svg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WIDTH 1000
#define LABEL_WIDTH 250
#define RIGHT_MARGIN 24
#define TOP 84
#define ROW_HEIGHT 20
#define BOTTOM 56
#define PLOT_WIDTH (WIDTH - LABEL_WIDTH - RIGHT_MARGIN)

struct outcome_style {
	const char *name;
	const char *colour;
};

/* Indexed by enum cb_outcome. Colours chosen to stay apart for common colour blindness. */
static const struct outcome_style styles[] = {
	{"reuse", "#4daf4a"},  {"download", "#377eb8"}, {"repair", "#ff7f00"},
	{"waited", "#984ea3"}, {"error", "#e41a1c"},    {"shutdown", "#222222"},
};

static void put_escaped(FILE *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", out);
			break;
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		default:
			if ((unsigned char)*s >= 0x20)
				fputc(*s, out);
			break;
		}
	}
}

static double x_of(const struct cb_stats_svg_chart *chart, int64_t ts_ms)
{
	double span = (double)(chart->end_ms - chart->begin_ms);

	if (span <= 0)
		return LABEL_WIDTH + PLOT_WIDTH / 2.0;
	return LABEL_WIDTH + (double)(ts_ms - chart->begin_ms) * PLOT_WIDTH / span;
}

/* Draws one start's mark: ticks for the warm outcomes, shapes for the others. */
static void put_mark(FILE *out, double x, double y_mid, unsigned char outcome)
{
	const char *colour =
		styles[outcome <= CB_STATS_SVG_SHUTDOWN ? outcome : CB_OUTCOME_ERROR].colour;

	switch (outcome) {
	case CB_STATS_SVG_SHUTDOWN:
		fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"3\" height=\"16\" fill=\"%s\"/>\n",
			x - 1.5, y_mid - 8, colour);
		break;
	case CB_OUTCOME_REUSE:
	case CB_OUTCOME_WAITED:
		fprintf(out,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			"stroke-width=\"1.5\"/>\n",
			x, y_mid - 6, x, y_mid + 6, colour);
		break;
	case CB_OUTCOME_DOWNLOAD:
	case CB_OUTCOME_REPAIR:
		fprintf(out,
			"<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" stroke=\"#ffffff\" "
			"stroke-width=\"1\"/>\n",
			x, y_mid, colour);
		break;
	default:
		fprintf(out,
			"<path d=\"M%.1f %.1fl8 8m0 -8l-8 8\" stroke=\"%s\" stroke-width=\"2.5\"/>\n",
			x - 4, y_mid - 4, colour);
		break;
	}
}

static void put_legend(FILE *out, int has_shutdowns)
{
	double x = LABEL_WIDTH;
	size_t n = sizeof(styles) / sizeof(styles[0]) - (has_shutdowns ? 0 : 1);

	for (size_t i = 0; i < n; i++) {
		put_mark(out, x + 5, 62, (unsigned char)i);
		fprintf(out, "<text x=\"%.1f\" y=\"66\" font-size=\"12\">%s</text>\n", x + 14,
			styles[i].name);
		x += 95;
	}
}

/* Picks a tick step that gives at most eight ticks over the span. */
static int64_t tick_step_ms(int64_t span_ms)
{
	static const int64_t steps[] = {
		1000,      2000,      5000,       10000,        15000,        30000,
		60000,     120000,    300000,     600000,       900000,       1800000,
		3600000,   7200000,   10800000,   21600000,     43200000,     86400000,
		172800000, 604800000, 1209600000, 2592000000LL, 7776000000LL, 31536000000LL,
	};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (span_ms / steps[i] <= 8)
			return steps[i];
	}
	return steps[sizeof(steps) / sizeof(steps[0]) - 1];
}

static void format_tick(int64_t ts_ms, int64_t step_ms, char *out, size_t out_size)
{
	time_t secs = (time_t)(ts_ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	if (step_ms < 60000)
		snprintf(out, out_size, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
	else if (step_ms < 86400000)
		snprintf(out, out_size, "%02d:%02d", tm.tm_hour, tm.tm_min);
	else
		snprintf(out, out_size, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday);
}

static void put_axis(FILE *out, const struct cb_stats_svg_chart *chart, int axis_y)
{
	int64_t span = chart->end_ms - chart->begin_ms;
	int64_t step = tick_step_ms(span > 0 ? span : 1);
	int64_t first = chart->begin_ms - chart->begin_ms % step;
	char label[64];
	char begin[40];

	if (first < chart->begin_ms)
		first += step;
	fprintf(out,
		"<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555555\" "
		"stroke-width=\"1\"/>\n",
		LABEL_WIDTH, axis_y, LABEL_WIDTH + PLOT_WIDTH, axis_y);
	for (int64_t t = first; t <= chart->end_ms && span > 0; t += step) {
		double x = x_of(chart, t);

		format_tick(t, step, label, sizeof(label));
		fprintf(out,
			"<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#555555\"/>\n"
			"<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e0e0e0\"/>\n"
			"<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
			x, axis_y, x, axis_y + 5, x, TOP - 4, x, axis_y, x, axis_y + 18, label);
	}
	cb_clock_format_rfc3339(chart->begin_ms, begin, sizeof(begin));
	fprintf(out,
		"<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#555555\">time (UTC) from %s</text>\n",
		LABEL_WIDTH, axis_y + 38, begin);
}

static void put_chart(FILE *out, const struct cb_stats_svg_chart *chart)
{
	int height = TOP + (int)chart->row_count * ROW_HEIGHT + BOTTOM;
	int axis_y = TOP + (int)chart->row_count * ROW_HEIGHT + 6;

	fprintf(out,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" fill=\"#222222\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
		WIDTH, height, WIDTH, height);
	fputs("<title>", out);
	put_escaped(out, chart->title);
	fputs("</title>\n<text x=\"16\" y=\"26\" font-size=\"16\" font-weight=\"bold\">", out);
	put_escaped(out, chart->title);
	fputs("</text>\n", out);
	fprintf(out, "<text x=\"16\" y=\"46\" font-size=\"12\" fill=\"#555555\">"
		     "one row per container (a fresh cache), one mark per start</text>\n");
	put_legend(out, chart->has_shutdowns);
	put_axis(out, chart, axis_y);

	for (size_t r = 0; r < chart->row_count; r++) {
		const struct cb_stats_svg_row *row = &chart->rows[r];
		double y = TOP + (double)r * ROW_HEIGHT;
		double y_mid = y + ROW_HEIGHT / 2.0;
		int64_t lo = INT64_MAX;
		int64_t hi = INT64_MIN;

		if (r % 2 == 1)
			fprintf(out,
				"<rect x=\"0\" y=\"%.1f\" width=\"%d\" height=\"%d\" "
				"fill=\"#f4f4f4\"/>\n",
				y, WIDTH, ROW_HEIGHT);
		fprintf(out,
			"<text x=\"%d\" y=\"%.1f\" font-size=\"11\" font-family=\"monospace\" "
			"text-anchor=\"end\">",
			LABEL_WIDTH - 10, y_mid + 4);
		put_escaped(out, row->label);
		fputs("</text>\n", out);
		for (size_t i = 0; i < row->count; i++) {
			lo = row->ts_ms[i] < lo ? row->ts_ms[i] : lo;
			hi = row->ts_ms[i] > hi ? row->ts_ms[i] : hi;
		}
		if (row->count > 0)
			fprintf(out,
				"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
				"stroke=\"#bbbbbb\" stroke-width=\"2\"/>\n",
				x_of(chart, lo), y_mid, x_of(chart, hi), y_mid);
		/* Warm starts first, so the rarer shapes are drawn on top of them. */
		for (int pass = 0; pass < 2; pass++) {
			for (size_t i = 0; i < row->count; i++) {
				int warm = row->outcomes[i] == CB_OUTCOME_REUSE ||
					   row->outcomes[i] == CB_OUTCOME_WAITED;

				if (warm == (pass == 0))
					put_mark(out, x_of(chart, row->ts_ms[i]), y_mid,
						 row->outcomes[i]);
			}
		}
	}
	if (chart->rows_omitted > 0)
		fprintf(out,
			"<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#555555\" "
			"text-anchor=\"end\">%zu more containers not drawn</text>\n",
			WIDTH - RIGHT_MARGIN, axis_y + 38, chart->rows_omitted);
	fputs("</svg>\n", out);
}

enum cb_status cb_stats_svg_write(const char *path, const struct cb_stats_svg_chart *chart,
				  struct cb_error *err)
{
	enum cb_status status = CB_OK;
	char tmp[PATH_MAX];
	FILE *out = NULL;
	int fd = -1;
	int n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return cb_error_set(err, CB_E_IO, 0, "the chart path %s is too long", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot create a file beside %s: %s", path,
				    strerror(errno));
	out = fdopen(fd, "w");
	if (out == NULL) {
		status = cb_error_set(err, CB_E_IO, errno, "cannot write %s: %s", tmp,
				      strerror(errno));
		close(fd);
		goto out;
	}
	put_chart(out, chart);
	if (ferror(out)) {
		status = cb_error_set(err, CB_E_IO, errno, "cannot write %s: %s", tmp,
				      strerror(errno));
		fclose(out);
		goto out;
	}
	if (fclose(out) != 0) {
		status = cb_error_set(err, CB_E_IO, errno, "cannot write %s: %s", tmp,
				      strerror(errno));
		goto out;
	}
	/* mkstemp makes it 0600; a chart is meant to be shared. */
	(void)chmod(tmp, 0644);
	if (rename(tmp, path) != 0)
		status = cb_error_set(err, CB_E_IO, errno, "cannot rename %s to %s: %s", tmp, path,
				      strerror(errno));
out:
	if (status != CB_OK)
		(void)unlink(tmp);
	return status;
}
