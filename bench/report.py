#!/usr/bin/env python3
"""Turns bench/run.py's results.json into docs/benchmarks.md and docs/benchmarks.svg.

    bench/report.py RESULTS.json [--docs DIR]

Every number in the page comes from the results file; the verdicts are computed here from
medians of the same run.
"""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import chart  # noqa: E402

MIB = 1024 * 1024
RSS_LIMIT_KB = 64 * 1024  # 64 MiB: the default --memory-budget

# Targets (ratios from the same run). cold_vs: contender -> {fs: max ratio}
COLD_TARGETS = [
    ("cb_http", "curl_unzip", {"tmpfs": 0.25, "ext4": 0.4}),
    ("cb_s3", "aws_unzip", {"tmpfs": 0.2, "ext4": 0.33}),
]
SERVER_FACTOR = 1.3
WARM_FACTOR = 1.1
CACHE_SLACK = 0.05


def med(samples, key="wall_s"):
    v = [s[key] for s in samples]
    return statistics.median(v) if v else None


def cpu_med(samples):
    return statistics.median([x["user_s"] + x["sys_s"] for x in samples]) if samples else 0.0


def server_cpu_med(samples, srv):
    """Median CPU server srv spent during the samples, or None when it was not measured."""
    v = [x["server_cpu_s"][srv] for x in samples if srv in x.get("server_cpu_s", {})]
    return statistics.median(v) if v else None


def spread(samples, key="wall_s"):
    v = [s[key] for s in samples]
    return (min(v), max(v)) if v else (None, None)


def fmt_s(x):
    if x is None:
        return "n/a"
    if x < 0.01:
        return "%.2f ms" % (x * 1000)
    if x < 1:
        return "%.0f ms" % (x * 1000)
    return "%.2f s" % x


def fmt_mb(b):
    return "%.1f MB" % (b / 1e6)


def verdict(ok):
    return "PASS" if ok else "MISS"


def compute_targets(res):
    out = []
    for g in res["groups"]:
        c = g["contenders"]
        b, fs = g["bundle"], g["fs"]
        where = "%s on %s" % (b, fs)

        def m(key):
            return med(c[key]["samples"]) if key in c and c[key]["samples"] else None

        for ours, theirs, limits in COLD_TARGETS:
            lim = limits.get(fs)
            if lim is None:
                continue
            a, t = m(ours), m(theirs)
            label_t = c[theirs]["label"] if theirs in c else theirs
            if a is None or t is None:
                why = ("coldboot s3:// does not work in this build: " +
                       res["s3"].get("coldboot_reason", "")[:160]) if ours == "cb_s3" else \
                    "not measured"
                out.append({"verdict": "MISS", "group": where, "ratio": None, "limit": lim,
                             "text": "%s: %s <= %.2fx %s: %s" % (where, ours, lim, label_t, why)})
                continue
            r = a / t
            cpu_r = cpu_med(c[ours]["samples"]) / max(1e-9, cpu_med(c[theirs]["samples"]))
            out.append({"verdict": verdict(r <= lim), "group": where, "ratio": r, "limit": lim,
                        "text": "%s: cold start %s / %s = %.3f (target <= %.2f; in CPU time "
                                "%.2f)" % (where, c[ours]["label"], label_t, r, lim, cpu_r)})
        for ours, dl in (("cb_http", "curl_only"), ("cb_s3", "s3_only"),
                         ("cb_paced", "curl_paced")):
            a, d, f = m(ours), m(dl), m("cb_file")
            if a is None or d is None or f is None:
                if ours == "cb_s3":
                    why = ("coldboot s3:// does not work in this build" if a is None else
                           "no download-only figure from s3rver (curl --aws-sigv4 failed)")
                    out.append({"verdict": "MISS", "group": where, "ratio": None,
                                "limit": SERVER_FACTOR,
                                "text": "%s: coldboot s3:// cold start <= %.1fx max(download, "
                                        "file:// extraction): not measurable, %s" % (
                                            where, SERVER_FACTOR, why)})
                continue
            r = a / max(d, f)
            out.append({"verdict": verdict(r <= SERVER_FACTOR), "group": where, "ratio": r,
                        "limit": SERVER_FACTOR,
                        "text": "%s: %s / max(%s %s, coldboot file:// %s) = %.2f (target <= %.1f)"
                                % (where, c[ours]["label"], c[dl]["label"], fmt_s(d), fmt_s(f), r,
                                   SERVER_FACTOR)})
        w = g.get("warm", {})
        if w.get("true", {}).get("samples") and w.get("cb_ensure", {}).get("samples"):
            t = med(w["true"]["samples"], "median_s")
            e = med(w["cb_ensure"]["samples"], "median_s")
            x = med(w["cb_exec_true"]["samples"], "median_s")
            r = e / t
            out.append({"verdict": verdict(r <= WARM_FACTOR), "group": where, "ratio": r,
                        "limit": WARM_FACTOR,
                        "text": "%s: warm `coldboot ensure` %s / `/bin/true` %s = %.2f (target <= "
                                "%.1f; as a wrapper `coldboot -- /bin/true` %s = %.2fx)" % (
                                    where, fmt_s(e), fmt_s(t), r, WARM_FACTOR, fmt_s(x), x / t)})
        rss = peak_rss_kb(g)
        if rss is not None:
            out.append({"verdict": verdict(rss <= RSS_LIMIT_KB), "group": where,
                        "ratio": rss / RSS_LIMIT_KB, "limit": 1.0,
                        "text": "%s: peak RSS of coldboot cold starts %.1f MiB (target <= 64 MiB, the "
                                "default `--memory-budget`)"
                                % (where, rss / 1024)})
        e = g.get("extras", {}).get("cb_http")
        if e and e.get("rc") == 0 and e.get("tree_disk_bytes"):
            peak, tree = e["peak_delta_bytes"], e["tree_disk_bytes"]
            r = peak / tree
            out.append({"verdict": verdict(r <= 1 + CACHE_SLACK), "group": where, "ratio": r,
                        "limit": 1 + CACHE_SLACK,
                        "text": "%s: peak cache use %s vs unpacked %s on disk = %.2fx (target <= "
                                "%.2fx)" % (where, fmt_mb(peak), fmt_mb(tree), r, 1 + CACHE_SLACK)})
    return out


def peak_rss_kb(g):
    vals = []
    for key in ("cb_http", "cb_s3", "cb_file"):
        vals += [s["maxrss_kb"] for s in g["contenders"].get(key, {}).get("samples", [])]
    e = g.get("extras", {}).get("cb_http", {})
    if "time_v_maxrss_kb" in e:
        vals.append(e["time_v_maxrss_kb"])
    return max(vals) if vals else None


def group_table(res, g):
    b = res["bundles"][g["bundle"]]
    lines = ["| contender | median | min | max | zip MB/s | CPU user+sys | peak RSS | ok runs |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, c in g["contenders"].items():
        s = c["samples"]
        if not s:
            lines.append("| %s | failed: %s | | | | | | 0 |" % (
                c["label"], (c["failures"] or ["no sample"])[0][:120].replace("|", "/")))
            continue
        m = med(s)
        lo, hi = spread(s)
        cpu = statistics.median([x["user_s"] + x["sys_s"] for x in s])
        rss = max(x["maxrss_kb"] for x in s)
        lines.append("| %s | **%s** | %s | %s | %.0f | %s | %.1f MiB | %d%s |" % (
            c["label"], fmt_s(m), fmt_s(lo), fmt_s(hi), b["zip_bytes"] / 1e6 / m, fmt_s(cpu),
            rss / 1024, len(s), (" (%d failed)" % len(c["failures"])) if c["failures"] else ""))
    return "\n".join(lines)


def warm_table(res):
    lines = ["| bundle / fs | `/bin/true` | `coldboot ensure` (warm) | ratio | "
             "`coldboot -- /bin/true` (warm) | ratio | runs per sample |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for g in res["groups"]:
        w = g.get("warm", {})
        if not w.get("true", {}).get("samples"):
            continue

        def cell(k):
            s = w[k]["samples"]
            m = med(s, "median_s")
            lo, hi = spread(s, "median_s")
            return m, "%s (%s to %s)" % (fmt_s(m), fmt_s(lo), fmt_s(hi))

        t, tc = cell("true")
        e, ec = cell("cb_ensure")
        x, xc = cell("cb_exec_true")
        s0 = w["true"]["samples"][0]
        lines.append("| %s / %s | %s | %s | %.2f | %s | %.2f | %d (%s), %d samples |" % (
            g["bundle"], g["fs"], tc, ec, e / t, xc, x / t, s0["runs"], s0["tool"],
            len(w["true"]["samples"])))
    return "\n".join(lines)


def extras_table(res):
    lines = ["| bundle / fs | run | wall | peak RSS (`time -v`) | peak fs use | fs use after | "
             "tree on disk (`du`) | peak / tree |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g in res["groups"]:
        for key, e in g.get("extras", {}).items():
            label = g["contenders"].get(key, {}).get("label", key)
            tree = e.get("tree_disk_bytes") or 0
            lines.append("| %s / %s | %s | %s | %s | %s | %s | %s | %s |" % (
                g["bundle"], g["fs"], label, fmt_s(e["wall_s"]),
                "%.1f MiB" % (e.get("time_v_maxrss_kb", e["maxrss_kb"]) / 1024),
                fmt_mb(e["peak_delta_bytes"]), fmt_mb(e["end_delta_bytes"]), fmt_mb(tree),
                "%.2f" % (e["peak_delta_bytes"] / tree) if tree else "n/a"))
    return "\n".join(lines)


def where_time_goes(res):
    p = res.get("profile") or {}
    if not p:
        return "Not measured in this run (`--no-profile`)."
    out = []
    b = p.get("bundle")
    meta = res["bundles"].get(b, {})
    zip_mb = meta.get("zip_bytes", 0) / 1e6
    g_tmpfs = next((g for g in res["groups"] if g["bundle"] == b and g["fs"] == "tmpfs"), None)

    def gm(key):
        if not g_tmpfs or not g_tmpfs["contenders"].get(key, {}).get("samples"):
            return None
        return med(g_tmpfs["contenders"][key]["samples"])

    out.append("Figures below are for the **%s** bundle with the cache on tmpfs, from single "
               "profiled runs after the timed rounds (the profilers slow the runs down; compare "
               "shares, not seconds)." % b)
    out.append("")
    # phases
    rows = ["| run | wall | user CPU | sys CPU | fetch (download + hash) | of which hash | "
            "unpack | total in coldboot |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    phase = {}
    for key, label in (("stats_cb_http", "coldboot cold (nginx)"),
                       ("stats_cb_file", "coldboot cold (file://)")):
        s = p.get(key)
        if not s:
            continue
        r = s["record"]
        phase[key] = r
        rows.append("| %s | %s | %s | %s | %d ms | %d ms | %d ms | %d ms |" % (
            label, fmt_s(s["wall_s"]), fmt_s(s["user_s"]), fmt_s(s["sys_s"]), r.get("fetch_ms", 0),
            r.get("verify_ms", 0), r.get("unpack_ms", 0), r.get("total_ms", 0)))
    out.append("**Phases**, from coldboot's own `--stats` record:")
    out.append("")
    out += rows
    rows2 = []
    for g in res["groups"]:
        e = g.get("extras", {}).get("cb_http", {})
        r = e.get("stats")
        if not r or not r.get("total_ms"):
            continue
        rows2.append("| %s / %s | %d ms | %d ms | %d ms | %d ms | %.0f %% |" % (
            g["bundle"], g["fs"], r.get("fetch_ms", 0), r.get("verify_ms", 0),
            r.get("unpack_ms", 0), r["total_ms"], 100.0 * r.get("unpack_ms", 0) / r["total_ms"]))
    if rows2:
        out.append("")
        out.append("The same record for the cold start from nginx in every bundle / file-system "
                   "pair (the untimed run of *Memory and cache use*):")
        out.append("")
        out.append("| bundle / fs | fetch | of which hash | unpack | total | unpack share |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        out += rows2
    out.append("")
    sh = phase.get("stats_cb_http")
    if sh and sh.get("total_ms"):
        f, u, t = sh.get("fetch_ms", 0), sh.get("unpack_ms", 0), sh["total_ms"]
        dl = gm("curl_only")
        if (f + u) <= 1.05 * t:
            out.append("- Fetch and unpack add up to %d + %d = %d ms of the %d ms total (%.0f %%): "
                       "they do not overlap. In this build the zip is downloaded whole into an "
                       "unnamed temporary file in the cache, hashed on the way, and only then "
                       "unpacked, so the download (%s for curl alone from the same server, "
                       "median) is never hidden behind the unpack." % (
                           f, u, f + u, t, 100.0 * (f + u) / t, fmt_s(dl)))
        else:
            out.append("- Fetch and unpack add up to %d + %d = %d ms, %.0f %% more than the %d ms "
                       "total: they overlap (entries inflate as their bytes arrive)."
                       % (f, u, f + u, 100.0 * (f + u - t) / t, t))
    # strace
    for key, label in (("strace_cb_http", "coldboot cold (nginx)"),
                       ("strace_unzip_local", "unzip -q (local zip)")):
        s = p.get(key)
        if not s or not s.get("table"):
            continue
        table = [r for r in s["table"] if r["syscall"] != "total"]
        total = next((r for r in s["table"] if r["syscall"] == "total"), None)
        table.sort(key=lambda r: -r["seconds"])
        out.append("")
        out.append("**`strace -c -f`, %s** (%s calls, %.3f s in system calls as strace counts "
                   "them; %d files in the bundle):" % (label, format(total["calls"], ",") if total
                                                      else "?", total["seconds"] if total else 0,
                                                      meta.get("files", 0)))
        out.append("")
        out.append("| syscall | seconds | % | calls | µs/call | errors |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in table[:10]:
            out.append("| %s | %.3f | %.1f | %s | %d | %s |" % (r["syscall"], r["seconds"], r["pct"],
                                                               format(r["calls"], ","),
                                                               r["usecs_per_call"],
                                                               r["errors"] or ""))
    # perf
    if p.get("perf_stat"):
        ps = p["perf_stat"]
        out.append("")
        out.append("**`perf stat`** (software events; this VM exposes %s hardware counters), "
                   "coldboot cold from nginx: task-clock %.0f ms, %s page faults, %s context "
                   "switches, %s CPU migrations." % (
                       "its" if p.get("perf_hw_counters") else "no",
                       float(ps.get("task-clock", 0)), fmt_int(ps.get("page-faults")),
                       fmt_int(ps.get("context-switches")), fmt_int(ps.get("cpu-migrations"))))
    if p.get("perf_dso"):
        out.append("")
        out.append("**`perf record -e cpu-clock`** (samples by shared object, then the top "
                   "symbols):")
        out.append("")
        out.append("| object | % of samples |")
        out.append("| --- | ---: |")
        for r in p["perf_dso"][:8]:
            out.append("| %s | %.1f |" % (r["dso"], r["pct"]))
        if p.get("perf_report"):
            out.append("")
            out.append("| object | symbol | % of samples |")
            out.append("| --- | --- | ---: |")
            for r in p["perf_report"][:14]:
                out.append("| %s | `%s` | %.1f |" % (r["dso"], r["sym"], r["pct"]))
    # callgrind
    cf, cu = p.get("callgrind_cb_file"), p.get("callgrind_unzip_local")
    if cf and cf.get("total_ir"):
        sb = p.get("callgrind_bundle", {})
        out.append("")
        out.append("**`valgrind --tool=callgrind`** on the small bundle (%d files, %s unpacked, "
                   "%s zip), from file://, instructions executed in user space (repeatable from "
                   "run to run): coldboot %s Ir%s." % (
                       sb.get("files", 0), fmt_mb(sb.get("unpacked_bytes", 0)),
                       fmt_mb(sb.get("zip_bytes", 0)), format(cf["total_ir"], ","),
                       ("; `unzip -q` %s Ir (%.2fx)" % (format(cu["total_ir"], ","),
                                                        cf["total_ir"] / cu["total_ir"]))
                       if cu and cu.get("total_ir") else ""))
        out.append("")
        out.append("| function (coldboot) | object | Ir | % |")
        out.append("| --- | --- | ---: | ---: |")
        for r in cf["functions"][:14]:
            fn = r["fn"] + (" (no symbol)" if r["fn"].startswith("0x") else "")
            out.append("| `%s` | %s | %s | %.1f |" % (fn, r["obj"], format(r["ir"], ","),
                                                     100.0 * r["ir"] / cf["total_ir"]))
        groups = classify_ir(cf)
        out.append("")
        out.append("By area: " + ", ".join("%s %.0f %%" % (k, 100.0 * v / cf["total_ir"])
                                          for k, v in groups if v > 0) + ".")
    out.append("")
    out.append(limits_text(res, p, phase, gm))
    return "\n".join(out)


def fmt_int(x):
    try:
        return format(int(float(x)), ",")
    except (TypeError, ValueError):
        return "?"


def classify_ir(cg):
    areas = {"inflate (zlib)": 0, "CRC-32 (zlib, libzip's entry check)": 0,
             "inflate and CRC-32 (libdeflate, ISA-L igzip)": 0, "xxh3 (checksum)": 0,
             "memcpy/memset (libc)": 0, "malloc/free (libc)": 0, "dynamic linking (ld.so)": 0,
             "libzip": 0, "coldboot's own code": 0, "other": 0}
    for r in cg["functions"]:
        fn, obj = r["fn"], r["obj"]
        if obj.startswith("libdeflate") or obj.startswith("libisal"):
            areas["inflate and CRC-32 (libdeflate, ISA-L igzip)"] += r["ir"]
        elif "crc32" in fn:
            areas["CRC-32 (zlib, libzip's entry check)"] += r["ir"]
        elif obj.startswith("libz.") or fn.startswith("inflate") or "adler" in fn:
            areas["inflate (zlib)"] += r["ir"]
        elif "xxh" in fn.lower() or obj.startswith("libxxhash"):
            areas["xxh3 (checksum)"] += r["ir"]
        elif obj.startswith("libzip"):
            areas["libzip"] += r["ir"]
        elif obj.startswith("libc") and ("memcpy" in fn or "memset" in fn or "memmove" in fn):
            areas["memcpy/memset (libc)"] += r["ir"]
        elif obj.startswith("libc") and ("malloc" in fn or "free" in fn or "alloc" in fn):
            areas["malloc/free (libc)"] += r["ir"]
        elif obj.startswith("ld-linux"):
            areas["dynamic linking (ld.so)"] += r["ir"]
        elif obj.startswith("coldboot") or obj.startswith("libcoldboot"):
            areas["coldboot's own code"] += r["ir"]
        else:
            areas["other"] += r["ir"]
    listed = sum(areas.values())
    areas["other"] += max(0, cg["total_ir"] - listed)
    return sorted(areas.items(), key=lambda kv: -kv[1])


def floor_ratios(res):
    """coldboot file:// / write-only floor, median over median, for every group that has both."""
    out = []
    for g in res["groups"]:
        c = g["contenders"]
        if c.get("cb_file", {}).get("samples") and c.get("write_floor", {}).get("samples"):
            f, w = med(c["cb_file"]["samples"]), med(c["write_floor"]["samples"])
            out.append("%s on %s %s vs %s (%.2fx)" % (g["bundle"], g["fs"], fmt_s(f), fmt_s(w),
                                                      f / w))
    return "; ".join(out) or "none measured"


def server_cpu_text(res):
    """The servers' CPU during coldboot's cold starts from them, and what it does to the ratios."""
    parts = []
    for g in res["groups"]:
        c = g["contenders"]
        got = {}
        for key, srv in (("cb_http", "http"), ("cb_s3", "s3"), ("s3_only", "s3")):
            m = server_cpu_med(c.get(key, {}).get("samples", []), srv)
            if m is not None:
                got[key] = m
        if "cb_s3" in got and "cb_http" in got:
            parts.append("%s on %s: s3rver %.0f ms (%.0f ms for curl's download alone), nginx "
                         "%.0f ms" % (g["bundle"], g["fs"], 1000 * got["cb_s3"],
                                      1000 * got.get("s3_only", 0), 1000 * got["cb_http"]))
    if not parts:
        return ""
    bound = cpu_bound_text(res)
    misses = [t for t in compute_targets(res) if t["verdict"] == "MISS"]
    s3_misses = [t for t in misses if "s3rver" in t["text"]]
    return ("- The servers run on the same two cores, and their CPU during coldboot's cold start "
            "from them (median, user + system of the server's processes, in 10 ms clock ticks) "
            "is taken from what "
            "coldboot's own extraction can use: %s. Where coldboot keeps both cores busy, a cold "
            "start from s3rver pays for s3rver's CPU as well.%s" % (
                "; ".join(parts),
                " %d of the %d targets missed in this run are measured against s3rver." % (
                    len(s3_misses), len(misses)) if misses else "")) + bound


def cpu_bound_text(res):
    """How near each cold start from s3rver is to what its CPU, and s3rver's, allow on these cores."""
    cores = res["machine"].get("nproc", 0)
    parts = []
    for g in res["groups"]:
        samples = g["contenders"].get("cb_s3", {}).get("samples", [])
        theirs = server_cpu_med(samples, "s3")
        if theirs is None or cores < 1:
            continue
        wall, own = med(samples), cpu_med(samples)
        floor = (own + theirs) / cores
        parts.append("%s on %s %s vs (%s + %s) / %d = %s (%.2fx)" % (
            g["bundle"], g["fs"], fmt_s(wall), fmt_s(own), fmt_s(theirs), cores, fmt_s(floor),
            wall / floor))
    if not parts:
        return ""
    return ("\n- Cold start from s3rver against the least time its work takes on %d cores (coldboot's "
            "CPU plus s3rver's, spread over both, with no core ever idle): %s. No ordering of the "
            "work can go below that bound; what lies above it is time a core stood idle (until "
            "the archive's tail is in, one thread runs; near the end, a big entry may inflate "
            "with little else left to run beside it)." % (
                cores, "; ".join(parts)))


def sys_spread_text(res):
    """How far the system time of the same cold start moves from run to run, next to user time."""
    parts, wide = [], False
    for g in res["groups"]:
        samples = g["contenders"].get("cb_http", {}).get("samples", [])  # successful runs only
        if len(samples) < 2:
            continue
        us = [x["user_s"] for x in samples]
        ss = [x["sys_s"] for x in samples]
        wide = wide or max(ss) > 1.5 * max(min(ss), 1e-3)
        parts.append("%s on %s: user %s to %s, system %s to %s" % (
            g["bundle"], g["fs"], fmt_s(min(us)), fmt_s(max(us)), fmt_s(min(ss)), fmt_s(max(ss))))
    if not parts or not wide:
        return ""
    return ("- The same cold start (from nginx) does the same work in every round, yet its system "
            "time moves far more than its user time: %s. This VM gives the guest's free memory "
            "back to its host (virtio-balloon free page reporting): measured by hand on "
            "2026-12-06, writing 1 GB onto tmpfs took 0.2-0.3 s on pages freed a moment before "
            "and 2.2-2.6 s on pages free for 30 s or more, of which only 2-4 GB stayed warm. "
            "Every run writes into a fresh directory, so how much of its output lands on "
            "such pages decides its system time (for `curl + unzip` and `unzip` as well), and "
            "warming the memory once before the rounds would not last. In single runs of "
            "the browser-like bundle onto tmpfs (`perf record -e cpu-clock -g`, by hand on "
            "2026-12-06), the kernel's copy into new tmpfs pages (`copy_folio_from_iter_atomic`) "
            "was 37-41 %% of coldboot's CPU and ISA-L's inflate 25-27 %%: on such days the "
            "cold path sits against the VM's memory, then the one core that inflates the "
            "biggest entry." % "; ".join(parts))


def paced_verdict(cp, dp, fl):
    """What a cold start from the paced server shows, from its median and its two baselines."""
    if cp < 0.9 * dp:
        return ("faster than one connection's download: the rest of the body comes in parts on "
                "more connections, and entries inflate as their bytes arrive, so the limit there "
                "is %s" % ("the extraction" if fl > 0.5 * dp else "the parts' connections"))
    if cp < 0.8 * (dp + fl):
        return "entries inflate as their bytes arrive, so the download is the limit there"
    return "they do not overlap"


def limits_text(res, p, phase, gm):
    """What limit the cold path sits against now, from this run's numbers."""
    lines = ["**What limits the cold path now, and what would move it** (from the numbers above):",
             ""]
    cb, dl, fl, uz = gm("cb_http"), gm("curl_only"), gm("cb_file"), gm("unzip_local")
    wf = gm("write_floor")
    sh = phase.get("stats_cb_http")
    if cb and dl and fl:
        if dl < 0.2 * fl:
            verdict = ("the loopback download is too short next to the extraction to show an "
                       "overlap: what the cold start adds to the extraction is the download's CPU "
                       "(client and server) on the same cores; the paced server below shows the "
                       "overlap")
        elif cb < 0.95 * (dl + fl):
            verdict = ("download and extraction overlap (entries inflate as their bytes arrive), "
                       "and what is left above the max is the download's own CPU on the same "
                       "cores")
        else:
            verdict = "download and extraction do not overlap here"
        lines.append("- Cold start from nginx (median %s) vs download alone (%s) and coldboot's own "
                     "extraction from file:// (%s): their sum is %s, their max %s. The cold start "
                     "is %.2fx the max and %.2fx the sum: %s." % (
                         fmt_s(cb), fmt_s(dl), fmt_s(fl), fmt_s(dl + fl), fmt_s(max(dl, fl)),
                         cb / max(dl, fl), cb / (dl + fl), verdict))
    cp, dp = gm("cb_paced"), gm("curl_paced")
    if cp and dp and fl:
        lines.append("- From the same nginx paced at 100 MB/s per connection (about one S3 GET on "
                     "Lambda): cold start %s vs download alone %s and extraction %s, sum %s: the cold "
                     "start is %.2fx the download, %.2fx the sum; %s." % (
                         fmt_s(cp), fmt_s(dp), fmt_s(fl), fmt_s(dp + fl), cp / dp, cp / (dp + fl),
                         paced_verdict(cp, dp, fl)))
    if sh and sh.get("total_ms"):
        share = sh.get("unpack_ms", 0) / sh["total_ms"]
        lines.append("- The unpack phase is %.0f %% of the cold path and the fetch phase %.0f %%: "
                     "the limit now is %s." % (
                         100 * share, 100.0 * sh.get("fetch_ms", 0) / sh["total_ms"],
                         "extraction (inflating, checking CRCs, creating and writing files)"
                         if share > 0.5 else "the download"))
    s = p.get("stats_cb_http")
    if s:
        busy = (s["user_s"] + s["sys_s"]) / s["wall_s"]
        lines.append("- coldboot used %.2f cores on average during its cold start (%s user + %s "
                     "sys over %s wall) on a %d-core machine: %s" % (
                         busy, fmt_s(s["user_s"]), fmt_s(s["sys_s"]), fmt_s(s["wall_s"]),
                         res["machine"].get("nproc", 0),
                         "it is one thread of work, so the other core is left to the server and "
                         "idle time." if busy < 1.2 else "it already uses more than one core."))
    cf = p.get("callgrind_cb_file")
    if cf and cf.get("total_ir"):
        areas = dict(classify_ir(cf))
        t = cf["total_ir"]
        inf = areas.get("inflate (zlib)", 0) / t
        crc = areas.get("CRC-32 (zlib, libzip's entry check)", 0) / t
        if inf + crc > 0.05:
            lines.append("- In user space, zlib's inflate is %.0f %% of coldboot's instructions and "
                         "zlib's CRC-32 another %.0f %%: inflating whole deflate entries with "
                         "libdeflate (2.6x zlib's speed as measured here for DESIGN.md, and its "
                         "CRC-32 is faster too) would cut most of that user time."
                         % (100 * inf, 100 * crc))
        else:
            ld = areas.get("inflate and CRC-32 (libdeflate, ISA-L igzip)", 0)
            lines.append("- In user space, libdeflate and ISA-L (inflate and CRC-32) are %.0f %% of "
                         "coldboot's "
                         "instructions: the inflating itself is what is left, and it already runs "
                         "on every core." % (100.0 * ld / t))
    st = p.get("stats_cb_file")
    if st:
        lines.append("- System time is %.0f %% of coldboot's CPU time in the file:// run: creating, "
                     "writing and closing one file per entry, and the page faults of fresh "
                     "tmpfs/page-cache pages (slow in this VM); the extraction workers already "
                     "overlap it with inflating, so what is left is the kernel's cost per file." % (
                         100.0 * st["sys_s"] / max(1e-9, st["user_s"] + st["sys_s"])))
    if wf and fl:
        lines.append("- The file system's floor for this tree (write only, from memory, no inflating) "
                     "is %s; coldboot's extraction from file:// takes %s, %.2fx that. Per bundle and "
                     "file system: %s." % (fmt_s(wf), fmt_s(fl), fl / wf, floor_ratios(res)))
    lines.append("- Idle time found and removed (`perf sched timehist`, `perf record -e "
                 "sched:sched_switch -g`): with the download thread running, creating the "
                 "directories (every one kept open) waited an RCU grace period each time the "
                 "kernel doubled the descriptor table, 60-90 ms idle for 2,878 directories; the "
                 "helper now grows the table before its first thread. A big deflated entry was "
                 "inflated and written in turn by one thread; a writer thread now writes each "
                 "slice while the next is inflated. The workers waited 10-80 ms for libzip's own "
                 "parse of the central directory (a second opinion on every entry), which glibc "
                 "fed a page at a time (2,400 page faults for 26,000 entries); the helper's heap "
                 "now grows 16 MiB at a time as huge pages (`bootstrap/helper_heap.h`) and that "
                 "wait is 1-2 ms. What the tmpfs runs show now is two busy cores.")
    spread = sys_spread_text(res)
    if spread:
        lines.append(spread)
    srv = server_cpu_text(res)
    if srv:
        lines.append(srv)
    if uz and fl:
        lines.append("- Against Info-ZIP on the same local zip: coldboot file:// %s vs `unzip -q` "
                     "%s (%.2fx); coldboot also copies and hashes the zip, and judges every entry "
                     "before writing any." % (fmt_s(fl), fmt_s(uz), fl / uz))
    ex = []
    for g in res["groups"]:
        e = g.get("extras", {}).get("cb_http")
        if e and e.get("tree_disk_bytes"):
            ex.append((g, e))
    if ex:
        g, e = ex[0]
        zb = res["bundles"][g["bundle"]]["zip_bytes"]
        over = e["peak_delta_bytes"] - e["tree_disk_bytes"]
        lines.append("- Peak cache use (%s on %s): %s, against a %s zip. "
                     "%s" % (g["bundle"], g["fs"],
                             "%s over the unpacked tree" % fmt_mb(over) if over > 0 else
                             "no more than the unpacked tree (the highest 10 ms sample was %s "
                             "below the tree's final size)" % fmt_mb(-over), fmt_mb(zb),
                             "The whole zip sits in the cache (an unnamed temporary file) beside "
                             "the growing tree until the unpack ends; streaming the entries, or "
                             "punching holes into the temporary file behind the reader, would "
                             "remove it." if over > 0.5 * zb else
                             "The temporary zip is given back as it is extracted (holes punched "
                             "behind the workers, the central directory once passed)."))
    return "\n".join(lines)


def machine_text(res):
    m = res["machine"]
    fs = ", ".join("%s at `%s` (%s, mounted `%s`)" % (k, v["path"], v["type"], v.get("options", ""))
                   for k, v in m["fs"].items())
    v = m.get("versions", {})
    return "\n".join([
        "- %s, %s; %d cores (%s), %.1f GiB memory, Linux %s, virtualisation: %s" % (
            m.get("os", "?"), "x86_64", m["nproc"], m.get("cpu", "?"), m.get("mem_gib", 0),
            m["kernel"], m.get("virt", "?")),
        "- file systems: %s" % fs,
        "- servers: HTTP %s; S3 %s (both on 127.0.0.1, sharing the same %d cores as the clients)"
        % (res["servers"]["http"], res["servers"]["s3"], m["nproc"]),
        "- tools: %s" % "; ".join("%s" % v[k] for k in sorted(v)),
        "- coldboot: `%s` %s, %s, from `%s`" % (
            os.path.relpath(res["coldboot"]["path"], os.path.dirname(HERE)),
            res["coldboot"].get("version", ""), res["coldboot"].get("build") or
            run_build_flags(res["coldboot"]["path"]), res["coldboot"].get("git", "")),
    ])


def run_settle(name):
    import run  # the settle thresholds live with the code that applies them
    return getattr(run, name)


def run_build_flags(coldboot):
    import run  # only for results written before run.py recorded the flags itself
    return run.build_flags(coldboot)


def write(res, docs_dir):
    os.makedirs(docs_dir, exist_ok=True)
    targets = compute_targets(res)
    chart.write_svg(res, os.path.join(docs_dir, "benchmarks.svg"))
    cfg = res["config"]
    md = []
    md.append("# Benchmarks")
    md.append("")
    md.append("How long a cold start takes with coldboot, against the usual way of getting a "
              "zip onto a function's disk (`curl` or `aws s3 cp`, then `unzip`), and what a warm "
              "start costs. Everything on this page was produced by one run of `bench/run.sh` on "
              "%s (%.0f minutes); the page and the chart are generated from that run's "
              "`results.json` by `bench/report.py`." % (res["started"], res["duration_s"] / 60))
    md.append("")
    md.append("## Machine")
    md.append("")
    md.append(machine_text(res))
    md.append("")
    md.append("## Reproduce")
    md.append("")
    md.append("```")
    md.append("bench/run.sh%s        # builds build-bench/ (Release), installs nginx-light, "
              "hyperfine, time if missing" % ("" if not cfg.get("quick") else " --quick"))
    md.append("bench/run.sh --quick  # the sitepkgs bundle only, 3 rounds (about half the time)")
    md.append("bench/run.sh --bundles nodemods     # one bundle only")
    md.append("bench/run.sh --zip mine=/path/to/bundle.zip   # your own zip, same contenders")
    md.append("```")
    md.append("")
    md.append("This run: `%s` (%d timed rounds after one untimed warm-up round, %d execs per "
              "warm-start sample)." % (res["command"].strip(), cfg["reps"], cfg["warm_runs"]))
    md.append("Bundles and server data are cached under `$BENCH_DIR` (default "
              "`/dev/shm/coldboot-bench`); ext4 runs go under `$BENCH_EXT4_DIR` (default "
              "`/tmp/coldboot-bench-ext4`).")
    md.append("")
    md.append("## Bundles")
    md.append("")
    md.append("Generated at bench time by `bench/gen_bundles.py` from a seeded PRNG (never "
              "committed), zipped with Info-ZIP `zip -r -q -y` (deflate level 6)%s." % (
                  "; a zip of your own (`--zip NAME=PATH`) is run as it is"
                  if any("source" in b for b in res["bundles"].values()) else ""))
    md.append("")
    md.append("| bundle | what | files | dirs | symlinks | unpacked | zip | ratio |")
    md.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    what = {"sitepkgs": "site-packages-like tree: Python-like source, stubs, metadata, "
                        "bytecode, shared-object-like binaries",
            "browser": "headless-browser-like layer: one ~110 MB binary (mixed entropy), "
                       "libraries, resource packs, locales",
            "nodemods": "node_modules-like tree: ~1,700 small packages of small .js, .d.ts and "
                        ".map files, some nested, a few bin symlinks",
            "small": "sitepkgs recipe scaled down (profiling only)"}
    for name, b in res["bundles"].items():
        desc = "your zip: `%s`" % b["source"] if "source" in b else what.get(name, "")
        md.append("| %s | %s | %s | %s | %d | %s | %s | %.2f |" % (
            name, desc, format(b["files"], ","), format(b["dirs"], ","),
            b["symlinks"], fmt_mb(b["unpacked_bytes"]), fmt_mb(b["zip_bytes"]),
            b["unpacked_bytes"] / b["zip_bytes"]))
    md.append("")
    md.append("## Targets")
    md.append("")
    md.append("Ratios of medians from this run. PASS means the target is met today; MISS means "
              "it is not.")
    md.append("")
    md.append("| verdict | where | measured |")
    md.append("| --- | --- | --- |")
    for t in targets:
        md.append("| **%s** | %s | %s |" % (t["verdict"], t["group"], t["text"].split(": ", 1)[1]))
    md.append("")
    md.append("## Cold start")
    md.append("")
    md.append("![median seconds per contender, with min-max whiskers](benchmarks.svg)")
    md.append("")
    md.append("Each row is one way of getting the bundle unpacked into a directory that did not "
              "exist before, on the file system named in the heading; median, min and max of "
              "%d timed rounds (wall time from fork to exit). *zip MB/s* is zip size / median. "
              "CPU time and peak RSS are of the whole process tree, as GNU `time` reports them (it starts every run). The download-only and "
              "inflate-only rows are the floors the cold path is compared with; *write only* is the file "
              "system's own floor for the tree: `bench/write_floor.c` creates the same directories, "
              "files (same sizes) and symlinks from memory with as many threads as coldboot's "
              "extractor uses, one open + write + close per file, no download, inflating or "
              "checking." % cfg["reps"])
    if not res["s3"]["coldboot"]:
        md.append("")
        md.append("coldboot's s3:// cold start is missing from the tables: the probe before the "
                  "rounds failed (%s)." % res["s3"]["coldboot_reason"][:300])
    for g in res["groups"]:
        md.append("")
        md.append("### %s on %s (`%s`, %s)" % (g["bundle"], g["fs"], g["path"], g["fs_type"]))
        md.append("")
        md.append(group_table(res, g))
        rl = g.get("rounds") or []
        la = [x["loadavg1"] for x in rl if x.get("loadavg1") is not None]
        cp = [x["cpu_some_pct"] for x in rl if x.get("cpu_some_pct") is not None]
        if la:
            md.append("")
            md.append("Machine load during the timed rounds: 1-minute load average %.1f to %.1f%s."
                      % (min(la), max(la), ("; some task was waiting for a CPU %.0f to %.0f %% of "
                                           "the time (PSI)" % (min(cp), max(cp))) if cp else ""))
    md.append("")
    md.append("Commands, per run directory `$D` (fresh each time):")
    md.append("")
    md.append("```")
    md.append("coldboot cold (nginx)      coldboot ensure --url http://127.0.0.1:PORT/B.zip "
              "--checksum xxh3:... --dir $D/cache")
    md.append("coldboot cold (s3rver)     AWS_ENDPOINT_URL_S3=http://127.0.0.1:PORT coldboot "
              "ensure --url s3://bench/B.zip --checksum ... --dir $D/cache")
    md.append("coldboot cold (file://)    coldboot ensure --url file://$BENCH_DIR/bundles/B.zip "
              "--checksum ... --dir $D/cache")
    md.append("curl + unzip               curl -s -f -o $D/x.zip URL && unzip -q $D/x.zip -d $D/out")
    md.append("aws s3 cp + unzip          /usr/bin/aws --endpoint-url ... s3 cp --only-show-errors "
              "s3://bench/B.zip $D/x.zip && unzip -q $D/x.zip -d $D/out")
    md.append("curl + python zipfile      curl ... && python3 -c 'zipfile.ZipFile(z)"
              ".extractall(d)' $D/x.zip $D/out")
    md.append("download only              curl -s -f -o /dev/null URL   (s3rver: curl --aws-sigv4 "
              "aws:amz:us-east-1:s3 --user KEY:SECRET)")
    md.append("inflate only               unzip -q $BENCH_DIR/bundles/B.zip -d $D/out")
    md.append("```")
    md.append("")
    md.append("## Warm start")
    md.append("")
    md.append("A warm start finds the published bundle and does nothing else. Each sample is "
              "the median of many back-to-back execs (hyperfine `-N`, no shell); the table gives "
              "the median of the samples and their range. The target compares `coldboot ensure` "
              "with `/bin/true`; the wrapper form also execs the handler, so it costs two execs.")
    md.append("")
    md.append(warm_table(res))
    md.append("")
    md.append("## Memory and cache use")
    md.append("")
    md.append("One extra untimed run per bundle and file system, under `/usr/bin/time -v`, while "
              "a thread samples the file system's used bytes (`statvfs`) every 10 ms. *peak fs "
              "use* is the highest sample minus the level before the run; *tree on disk* is "
              "`du -s -B1` of the unpacked tree afterwards (the unpacked size in blocks, which is "
              "what the cache really holds). The ext4 figures include whatever else wrote to "
              "that file system meanwhile.")
    md.append("")
    md.append(extras_table(res))
    md.append("")
    md.append("## Where the time goes")
    md.append("")
    md.append(where_time_goes(res))
    md.append("")
    md.append("## Method and hygiene")
    md.append("")
    md.append("- One run measures everything, interleaved: each round runs every contender once, "
              "starting from a different contender each round; round 0 is an untimed warm-up "
              "(this VM is slow to touch fresh memory, so first use of pages is paid there).")
    md.append("- Every run writes into a directory that did not exist before. Nothing is deleted "
              "right before a timed run: tmpfs rounds are deleted after the round, followed by "
              "`sync` and a %.0f s pause; ext4 runs are all kept until the whole benchmark ends "
              "(on this ext4, creating many files right after deleting many stalls inside the "
              "kernel). Before every run, untimed, a `sync` writes back what the runs before it "
              "left dirty, so that no run pays for another's writeback (on two CPUs a kworker "
              "flushing 180 MB competes with a parallel extractor more than with `unzip`). "
              "After every ext4 run, untimed, the pages of the files it wrote are dropped "
              "(`posix_fadvise(DONTNEED)`): the kept runs would otherwise fill the memory with "
              "about 20 GB of page cache, and later runs would pay for reclaiming it."
              % cfg.get("pause_s", 2))
    st = (res.get("settled") or {}).get("ext4")
    if st:
        md.append("- Before each ext4 group the run waits until %d s have passed since an earlier "
                  "benchmark deleted its ext4 runs, then, up to %d s, until creating %d small files "
                  "there takes at most %.0f ms. This ext4 has no journal, and then the kernel does "
                  "not reuse an inode deleted less than 60 s ago (360 s while its inode-table "
                  "block is dirty): `recently_deleted()` in `fs/ext4/ialloc.c` looks up the "
                  "inode-table block of every such free inode a creation passes. `perf` shows it: "
                  "right after a large deletion, 60 %% of the CPU of creating files went to "
                  "`find_inode_bit`, `recently_deleted` and `find_get_block_common`, and the "
                  "write-only floor of nodemods took 5.1-5.7 s instead of 0.65 s. This run waited "
                  "%s." % (
                      run_settle("RECENT_DELETE_S"), run_settle("SETTLE_MAX_S"),
                      run_settle("SETTLE_FILES"), 1000 * run_settle("SETTLE_OK_S"),
                      " and ".join("%.0f s (%d probe%s)" % (x["waited_s"], x["probes"],
                                                           "" if x["probes"] == 1 else "s")
                                   for x in st)))
    cl = res.get("cleanup_s") or {}
    made = {}
    for g in res["groups"]:
        made[g["fs"]] = made.get(g["fs"], 0) + g.get("entries_created", 0)
    if "ext4" in cl:
        opts = res["machine"]["fs"].get("ext4", {}).get("options", "")
        md.append("- Deleting what this run created on ext4 (%s checked entries in the timed and "
                  "warm-up runs, plus the extra runs) took %.0f s with four `rm` processes%s; the "
                  "tmpfs runs took %.0f s to delete." % (
                      format(made.get("ext4", 0), ","), cl["ext4"],
                      ": this ext4 is mounted with `discard`, so every freed extent waits for a "
                      "discard request to the virtual disk (`blkdev_issue_discard` under "
                      "`ext4_free_blocks` in the kernel stack of a deleting `rm`)" if "discard" in
                      opts.split(",") else "", cl.get("tmpfs", 0)))
    md.append("- Every run's result is checked (exit status, and the number of entries in the "
              "unpacked tree); a failed run is reported and not counted.")
    md.append("- nginx (`sendfile`, one process) is the fast server; s3rver is a Node process "
              "that verifies SigV4 and is much slower per byte, so the s3 rows measure s3rver as "
              "much as the client. Servers and clients share the same two cores.")
    md.append("- The machine is shared with other work; min and max show the spread. Timings are "
              "never part of the unit tests.")
    md.append("")
    with open(os.path.join(docs_dir, "benchmarks.md"), "w") as f:
        f.write("\n".join(md))
    return targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--docs", default=os.path.join(os.path.dirname(HERE), "docs"))
    args = ap.parse_args()
    with open(args.results) as f:
        res = json.load(f)
    for t in write(res, args.docs):
        print("%-4s %s" % (t["verdict"], t["text"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
