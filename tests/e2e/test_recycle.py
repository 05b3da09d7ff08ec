"""Container recycling, end to end: examples/recycle/recycle.py runs a real handler under the built
coldboot with --stats=FILE through the published schedule (133 starts, recycles before starts 1,
30, 61, 90 and 118), and `coldboot stats` must report exactly 133 starts, 5 containers,
5 downloads and 128 reuses, however the records reach it.
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402
from cbtest import Skip, check, check_equal, check_exit  # noqa: E402

SCHEDULE = "1,30,61,90,118"
STARTS = 133
LIFETIMES = [29, 31, 29, 28, 16]  # starts per container under SCHEDULE
RUN_TIMEOUT_S = 300


def recycle(work, *extra):
    """Runs the simulation with its work folder in work; returns (process, stats file)."""
    stats = os.path.join(work, "stats.jsonl")
    script = os.path.join(cbtest.REPO, "examples", "recycle", "recycle.py")
    proc = cbtest.run([sys.executable, script, "--coldboot", cbtest.COLDBOOT, "--work", work,
                       "--stats", stats, "--starts", str(STARTS), "--recycle-at", SCHEDULE]
                      + list(extra), timeout=RUN_TIMEOUT_S)
    return proc, stats


def check_report(report, what):
    check_equal(report["starts"], STARTS, what + ": starts")
    check_equal(report["containers"], 5, what + ": containers")
    check_equal(report["downloads"], 5, what + ": downloads")
    check_equal(report["reuses"], 128, what + ": reuses")
    check_equal(report["errors"], 0, what + ": errors")
    check_equal(report["reuse_rate"], 0.962406, what + ": reuse_rate")
    check_equal(report["redownload_rate"], 0.037594, what + ": redownload_rate")
    life = report["container_lifetime"]["starts"]
    ordered = sorted(LIFETIMES)
    check_equal((life["min"], life["median"], life["max"]), (ordered[0], ordered[2], ordered[-1]),
                what + ": container lifetimes in starts")


def check_records(stats):
    """The raw records: one line per start, each container's counter running 1..its lifetime."""
    with open(stats, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    check_equal(len(records), STARTS, "records in " + stats)
    by_container = {}
    for r in records:
        by_container.setdefault(r["container"], []).append(r)
    check_equal(sorted(len(v) for v in by_container.values()), sorted(LIFETIMES),
                "records per container")
    for rs in by_container.values():
        check_equal([r["start"] for r in rs], list(range(1, len(rs) + 1)), "start counters")
        check_equal([r["outcome"] for r in rs], ["download"] + ["reuse"] * (len(rs) - 1),
                    "outcomes in one container")
    return records


def unshare_permitted():
    if shutil.which("unshare") is None:
        return False
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    probe = cbtest.fresh_dir("probe")
    proc = subprocess.run(["unshare"] + flags + ["--", "sh", "-c", 'mount --bind "$0" "$0"', probe],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    return proc.returncode == 0


def test_published_schedule_with_private_mounts():
    if not unshare_permitted():
        raise Skip("unshare -m is not permitted here (the wiped-cache test covers the schedule)")
    work = cbtest.fresh_dir("unshare")
    proc, stats = recycle(work, "--mode", "unshare", "--json")
    check_exit(proc, 0, "recycle.py --mode unshare")
    check("mode unshare" in proc.stderr, "recycle.py did not use unshare: %r" % proc.stderr[-400:])
    check_report(json.loads(proc.stdout), "unshare")
    check_records(stats)
    # Each container kept its own folder, whose container.json counted its starts.
    counts = []
    for name in sorted(os.listdir(os.path.join(work, "containers"))):
        with open(os.path.join(work, "containers", name, "container.json"), encoding="utf-8") as f:
            identity = json.load(f)
        counts.append((identity["starts"], identity["downloads"]))
    check_equal(counts, [(n, 1) for n in LIFETIMES], "container.json of each container")


def test_published_schedule_with_wiped_cache():
    work = cbtest.fresh_dir("wipe")
    proc, stats = recycle(work, "--mode", "wipe")
    check_exit(proc, 0, "recycle.py --mode wipe")
    # The human report says the same, in words.
    for line in ("starts              133", "containers          5",
                 "downloads           5 (download 5, repair 0)",
                 "reuses              128 (reuse 128, waited 0)",
                 "re-download rate    3.8 %", "in starts:  min 16, median 29, p90 31, max 31"):
        check(line in proc.stdout, "the report lacks %r:\n%s" % (line, proc.stdout))
    records = check_records(stats)

    # The same records as a CloudWatch Logs export on stdin (what `aws logs
    # filter-log-events` prints), with Lambda's lines around them, give the same report.
    events = []
    for i, r in enumerate(records):
        stream = "2026/11/22/[$LATEST]%s" % r["container"]
        line = json.dumps(r, separators=(",", ":")) + "\n"
        events.append({"logStreamName": stream, "timestamp": 1795334400000 + i, "message": line})
        events.append({"logStreamName": stream, "timestamp": 1795334400000 + i,
                       "message": "REPORT RequestId: req-%d\tDuration: 1.00 ms\t%s\n"
                                  % (i, "Init Duration: 5.00 ms\t" if r["start"] == 1 else "")})
    export = json.dumps({"events": events, "searchedLogStreams": []}, indent=4)
    proc = cbtest.run([cbtest.COLDBOOT, "stats", "--json"], input_text=export)
    check_exit(proc, 0, "coldboot stats --json < export")
    report = json.loads(proc.stdout)
    check_report(report, "export on stdin")
    check_equal(report["invocations"]["reports"], STARTS, "REPORT lines")
    check_equal(report["invocations"]["log_streams"], 5, "log streams")
    check_equal(report["invocations"]["init_reports"], 5, "REPORT lines with an Init Duration")


def test_timeline_chart_renders():
    work = cbtest.fresh_dir("svg")
    svg = os.path.join(work, "chart.svg")
    proc, _ = recycle(work, "--mode", "wipe", "--svg", svg)
    check_exit(proc, 0, "recycle.py --svg")
    with open(svg, encoding="utf-8") as f:
        text = f.read()
    check("<script" not in text and "href" not in text, "the chart is not self-contained")
    rows = re.findall(r'font-family="monospace"[^>]*>([0-9a-f]{12})  (\d+) starts<', text)
    check_equal(sorted(int(n) for _, n in rows), sorted(LIFETIMES), "chart rows")
    check_equal(text.count("<circle"), 5 + 2, "download marks (and the legend's two)")
    if shutil.which("rsvg-convert") is None:
        raise Skip("rsvg-convert is not installed (apt-get install librsvg2-bin); the SVG was not rendered")
    png = os.path.join(work, "chart.png")
    proc = cbtest.run(["rsvg-convert", "-o", png, svg])
    check_exit(proc, 0, "rsvg-convert")
    with open(png, "rb") as f:
        header = f.read(24)
    check(header[:8] == b"\x89PNG\r\n\x1a\n", "rsvg-convert wrote no PNG")
    width = int.from_bytes(header[16:20], "big")
    check_equal(width, 1000, "rendered width")


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
