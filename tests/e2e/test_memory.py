"""--memory-budget end to end: how it is set, what it refuses, and that a cold start stays under it.

Bundles are generated here (a big incompressible-ish file and many small ones),
zipped with Info-ZIP, served by the static HTTP server on 127.0.0.1. Peak RSS
is read from the kernel (ru_maxrss of the waited-for processes, the helper
included) by a small Python wrapper; it is a memory bound, not a timing.
"""
import os
import random
import subprocess
import sys
import zipfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import check, check_equal, check_exit  # noqa: E402

MIB = 1024 * 1024

# Runs argv, then prints the largest resident set of any process it waited for, in KiB.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:])\n"
    "print('peak_rss_kib=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(r.returncode)\n"
)


def sanitized():
    """True when the helper is a sanitizer build: its shadow memory makes RSS meaningless."""
    helper = os.path.join(os.path.dirname(cbtest.COLDBOOT), "coldboot-cold")
    out = cbtest.run(["ldd", helper]).stdout
    return "libasan" in out or "libubsan" in out


def make_bundle(root, big_mib, small_files):
    """A folder with one big file (half random, half text) and many small ones; returns (src, zip)."""
    src = os.path.join(root, "src")
    rnd = random.Random(big_mib * 1000 + small_files)
    os.makedirs(os.path.join(src, "bin"))
    half = big_mib * MIB // 2
    line = b"0123456789 compressible text for the other half of the binary\n"
    with open(os.path.join(src, "bin", "big"), "wb") as f:
        f.write(rnd.randbytes(half))
        f.write((line * (half // len(line) + 1))[:half])
    for i in range(small_files):
        d = os.path.join(src, "pkg%03d" % (i // 100))
        os.makedirs(d, exist_ok=True)
        cbtest.write_file(os.path.join(d, "m%05d.py" % i), "x = %d\n" % i * (i % 50 + 1))
    os.makedirs(os.path.join(root, "www"))
    return src, cbtest.zip_with_infozip(src, os.path.join(root, "www", "b.zip"))


def cold_start(url, checksum, cache, *options, env=None):
    """coldboot ensure under the peak-RSS wrapper; returns (proc, peak RSS in bytes)."""
    argv = [sys.executable, "-c", PEAK_RSS, cbtest.COLDBOOT, "ensure", "--url", url,
            "--checksum", checksum, "--dir", cache] + list(options)
    proc = cbtest.run(argv, env=env or cbtest.base_env(), timeout=120)
    peak = [ln for ln in proc.stderr.splitlines() if ln.startswith("peak_rss_kib=")]
    check(peak != [], "no peak RSS reported: %s" % proc.stderr[-300:])
    return proc, int(peak[-1].split("=")[1]) * 1024


def test_budget_values_are_checked():
    work = cbtest.fresh_dir("mem")
    base = ["ensure", "--url", "http://127.0.0.1:9/b.zip", "--checksum", "xxh3:" + "0" * 32,
            "--dir", os.path.join(work, "cache")]
    proc = cbtest.coldboot(*base, "--memory-budget", "1M")
    check_exit(proc, 3)
    check("at least 16M" in proc.stderr, "no minimum in %r" % proc.stderr)
    proc = cbtest.coldboot(*base, "--memory-budget", "lots")
    check_exit(proc, 3)
    check('memory-budget "lots" is not a size' in proc.stderr, "unclear: %r" % proc.stderr)
    proc = cbtest.coldboot(*base, env=cbtest.base_env({"COLDBOOT_MEMORY_BUDGET": "8M"}))
    check_exit(proc, 3)
    check("COLDBOOT_MEMORY_BUDGET" in proc.stderr, "the variable is not named: %r" % proc.stderr)


def test_too_many_entries_for_the_budget_exit_6_then_fit_a_bigger_one():
    work = cbtest.fresh_dir("mem")
    src, zip_path = make_bundle(work, 1, 20000)
    checksum = cbtest.coldboot_hash(zip_path)
    cache = os.path.join(work, "cache")
    with cbtest.StaticServer(os.path.dirname(zip_path)) as srv:
        # On Lambda the default is a quarter of the function's memory: 64 MB -> 16 MiB.
        small = cbtest.base_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "64"})
        proc = cbtest.coldboot("ensure", "--url", srv.url("b.zip"), "--checksum", checksum, "--dir", cache,
                               env=small)
        check_exit(proc, 6)
        check("memory budget of 16 MiB" in proc.stderr and "raise --memory-budget" in proc.stderr,
              "unclear: %r" % proc.stderr)
        check_equal(os.listdir(os.path.join(cache, "bundles")), [], "bundles after the refusal")
        # A flag beats the Lambda default.
        proc = cbtest.coldboot("ensure", "--url", srv.url("b.zip"), "--checksum", checksum, "--dir", cache,
                               "--memory-budget", "96M", env=small)
        check_exit(proc, 0)
    cbtest.check_same_tree(src, proc.stdout.strip())


def test_peak_rss_stays_under_the_budget_whatever_the_bundle():
    if sanitized():
        raise cbtest.Skip("sanitizer build: RSS includes shadow memory")
    work = cbtest.fresh_dir("mem")
    for name, big_mib, small_files, budget_mib in (("a", 24, 500, 24), ("b", 72, 500, 24),
                                                    ("c", 72, 6000, 24), ("d", 72, 1000, 16)):
        root = os.path.join(work, name)
        src, zip_path = make_bundle(root, big_mib, small_files)
        checksum = cbtest.coldboot_hash(zip_path)
        with cbtest.StaticServer(os.path.dirname(zip_path)) as srv:
            proc, peak = cold_start(srv.url("b.zip"), checksum, os.path.join(root, "cache"),
                                    "--memory-budget", "%dM" % budget_mib)
        check_exit(proc, 0, "cold start of %s" % name)
        check(peak <= budget_mib * MIB,
              "bundle %s (%d MiB file, %d small files): peak RSS %.1f MiB over the %d MiB budget"
              % (name, big_mib, small_files, peak / MIB, budget_mib))
        cbtest.check_same_tree(src, proc.stdout.strip())
        print("  bundle %s: %d MiB file, %d small files, budget %d MiB: peak RSS %.1f MiB"
              % (name, big_mib, small_files, budget_mib, peak / MIB))
        cbtest.remove_tree(root)


def test_entries_that_nearly_fill_a_64m_budget_still_fit_without_huge_pages():
    # At 64 MiB and more the helper's heap comes in huge pages and the extraction counts 8 MiB
    # for them (bootstrap/helper_heap.h). 85,000 entries leave less than that: the helper turns
    # huge pages off instead of refusing a zip that fits the budget, and stays under it.
    work = cbtest.fresh_dir("mem")
    www = os.path.join(work, "www")
    os.makedirs(www)
    zip_path = os.path.join(www, "b.zip")
    count = 85000
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as z:
        for i in range(count):
            z.writestr("d%02d/%06d" % (i % 50, i), b"")
    checksum = cbtest.coldboot_hash(zip_path)
    with cbtest.StaticServer(www) as srv:
        proc, peak = cold_start(srv.url("b.zip"), checksum, os.path.join(work, "cache"),
                                "--memory-budget", "64M")
    check_exit(proc, 0, "cold start of %d entries at 64M" % count)
    bundle = proc.stdout.strip()
    files = sum(len(names) for _, _, names in os.walk(bundle)) - 1  # the marker
    check_equal(files, count, "files unpacked")
    if not sanitized():
        check(peak <= 64 * MIB, "peak RSS %.1f MiB over the 64 MiB budget" % (peak / MIB))
        print("  %d entries, budget 64 MiB: peak RSS %.1f MiB" % (count, peak / MIB))
    cbtest.remove_tree(work)


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
