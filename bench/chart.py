#!/usr/bin/env python3
"""Writes docs/benchmarks.svg from bench/run.py's results.json.

    bench/chart.py RESULTS.json [-o docs/benchmarks.svg]

Grouped bars: one block per bundle x file system, one bar per contender with its median
seconds, a whisker from min to max, and the value written beside it. The SVG is
self-contained: no scripts, no external fonts or styles, a generic font family.
"""
import argparse
import json
import os
import statistics
import sys
from xml.sax.saxutils import escape

COLORS = {
    "cb_http": "#1b7837", "cb_s3": "#5aae61", "cb_file": "#a6dba0",
    "curl_unzip": "#762a83", "aws_unzip": "#9970ab", "curl_pyzip": "#c2a5cf",
    "curl_only": "#4d4d4d", "s3_only": "#878787", "unzip_local": "#bababa",
    "write_floor": "#e0e0e0", "cb_paced": "#00441b", "curl_paced": "#252525",
}
ROW_H = 18
BAR_H = 12
LABEL_W = 270
PLOT_W = 560
RIGHT_W = 90
TOP = 48
GROUP_GAP = 30


def nice_step(vmax):
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 50):
        if vmax / step <= 8:
            return step
    return 100


def fmt(x):
    return "%.0f ms" % (x * 1000) if x < 1 else "%.2f s" % x


def write_svg(res, path):
    groups = []
    vmax = 0.0
    for g in res["groups"]:
        rows = []
        for key, c in g["contenders"].items():
            v = [s["wall_s"] for s in c["samples"]]
            if not v:
                rows.append((key, c["label"], None, None, None))
                continue
            rows.append((key, c["label"], statistics.median(v), min(v), max(v)))
            vmax = max(vmax, max(v))
        groups.append(("%s on %s (%s)" % (g["bundle"], g["fs"], g["fs_type"]), rows))
    vmax = vmax or 1.0
    step = nice_step(vmax)
    ticks = []
    t = 0.0
    while t <= vmax + 1e-9:
        ticks.append(t)
        t += step
    scale_max = ticks[-1] if ticks[-1] >= vmax else ticks[-1] + step
    if ticks[-1] < scale_max:
        ticks.append(scale_max)
    width = LABEL_W + PLOT_W + RIGHT_W
    height = TOP + sum(16 + len(r) * ROW_H + GROUP_GAP for _, r in groups) + 10

    def x_of(v):
        return LABEL_W + PLOT_W * v / scale_max

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="11">' % (width, height, width, height),
           '<rect width="100%" height="100%" fill="#ffffff"/>',
           '<text x="%d" y="18" font-size="14" font-weight="bold">coldboot cold start vs '
           'download + unzip: median seconds (whiskers: min to max, %d rounds)</text>'
           % (10, res["config"]["reps"]),
           '<text x="10" y="34" fill="#555555">%s; lower is better</text>' % escape(
               "%s, %d cores, %s" % (res["machine"].get("cpu", "?"), res["machine"]["nproc"],
                                     res["started"]))]
    y = TOP
    for title, rows in groups:
        block_h = len(rows) * ROW_H
        out.append('<text x="10" y="%d" font-weight="bold">%s</text>' % (y + 10, escape(title)))
        y += 16
        for tv in ticks:
            x = x_of(tv)
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>' % (
                x, y - 2, x, y + block_h))
            out.append('<text x="%.1f" y="%d" fill="#777777" font-size="9" text-anchor="middle">'
                       '%s</text>' % (x, y + block_h + 10, ("%g s" % tv)))
        for key, label, m, lo, hi in rows:
            cy = y + ROW_H / 2
            out.append('<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s'
                       '</text>' % (LABEL_W - 8, cy, escape(label)))
            if m is None:
                out.append('<text x="%d" y="%.1f" fill="#b2182b" dominant-baseline="middle">'
                           'failed</text>' % (LABEL_W + 4, cy))
            else:
                out.append('<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="%s"/>' % (
                    LABEL_W, cy - BAR_H / 2, max(1.0, x_of(m) - LABEL_W), BAR_H,
                    COLORS.get(key, "#999999")))
                out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>' % (
                    x_of(lo), cy, x_of(hi), cy))
                for xv in (lo, hi):
                    out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>'
                               % (x_of(xv), cy - 3, x_of(xv), cy + 3))
                out.append('<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>' % (
                    x_of(hi) + 5, cy, fmt(m)))
            y += ROW_H
        y += GROUP_GAP
    out.append("</svg>")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("-o", "--output", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.svg"))
    args = ap.parse_args()
    with open(args.results) as f:
        write_svg(json.load(f), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
