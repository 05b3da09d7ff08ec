"""Kills, races and damaged state: a failed or killed start never leaves a marker over an
incomplete tree, and the next start recovers by itself (issue: never harmed by bad input or a kill).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402
from cbtest import Failure, Skip, check, check_equal, check_exit  # noqa: E402


def small_bundle(name="b"):
    """A small layer-style tree and its Info-ZIP zip: (src_dir, zip_path, checksum)."""
    work = cbtest.fresh_dir(name)
    src = os.path.join(work, "src")
    cbtest.make_layer_tree(src)
    zip_path = os.path.join(work, "bundle.zip")
    cbtest.zip_with_infozip(src, zip_path)
    return src, zip_path, cbtest.coldboot_hash(zip_path)


def ensure(cache, url, checksum, *extra, env=None, timeout=60):
    return cbtest.coldboot("ensure", "--url", url, "--checksum", checksum, "--dir", cache, *extra,
                           env=env, timeout=timeout)


def published(cache):
    bundles = os.path.join(cache, "bundles")
    return sorted(os.listdir(bundles)) if os.path.isdir(bundles) else []


def leftovers(cache):
    staging = os.path.join(cache, "staging")
    return sorted(os.listdir(staging)) if os.path.isdir(staging) else []


def check_complete_or_absent(cache, src, checksum, what):
    """Either nothing is published, or the published bundle is whole and correct."""
    names = published(cache)
    if not names:
        return False
    digest = cbtest.digest_of(checksum)
    check_equal(names, [digest], "%s: published bundles" % what)
    bundle = os.path.join(cache, "bundles", digest)
    marker = cbtest.read_marker(bundle)
    check_equal(marker.get("checksum"), checksum, "%s: marker checksum" % what)
    cbtest.check_same_tree(src, bundle)
    return True


# ---- concurrency ----


def test_eight_concurrent_starts_download_once():
    src, zip_path, checksum = small_bundle()
    cache = os.path.join(cbtest.fresh_dir("c8"), "cache")
    out_dir = cbtest.fresh_dir("c8out")
    with cbtest.StaticServer(os.path.dirname(zip_path)) as server:
        url = server.url("bundle.zip")
        procs = []
        for i in range(8):
            out = os.path.join(out_dir, "ran-%d" % i)
            procs.append(subprocess.Popen(
                [cbtest.COLDBOOT, "--url", url, "--checksum", checksum, "--dir", cache,
                 "--stats=" + os.path.join(out_dir, "stats.jsonl"), "--",
                 "sh", "-c", 'echo "$COLDBOOT_BUNDLE" > "$1"', "sh", out],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=cbtest.base_env()))
        for p in procs:
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise Failure("a concurrent start did not finish within 60 s")
            check_equal(p.returncode, 0, "a concurrent start's exit status (stderr %r)" % err[-300:])
        gets = [r for r in server.requests() if r[0] == "GET"]
    check_equal(len(gets), 1, "downloads made by 8 concurrent starts")
    check_equal(published(cache), [cbtest.digest_of(checksum)], "published bundles")
    expected = os.path.join(cache, "bundles", cbtest.digest_of(checksum))
    for i in range(8):
        with open(os.path.join(out_dir, "ran-%d" % i)) as f:
            check_equal(f.read().strip(), expected, "handler %d saw COLDBOOT_BUNDLE" % i)
    cbtest.check_same_tree(src, expected)
    with open(os.path.join(out_dir, "stats.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    outcomes = sorted(r["outcome"] for r in records)
    check_equal(len(records), 8, "stats records")
    check_equal(outcomes.count("download"), 1, "download outcomes in %r" % outcomes)
    check_equal(len({r["start"] for r in records}), 8, "distinct start numbers")


def stalled_holder(cache, checksum, fifo):
    """Starts a coldboot that takes the lock and blocks reading a FIFO that nobody writes."""
    os.mkfifo(fifo)
    proc = subprocess.Popen([cbtest.COLDBOOT, "ensure", "--url", "file://" + fifo, "--checksum",
                             checksum, "--dir", cache, "--timeout", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=cbtest.base_env())
    # Wait (bounded) until it is inside the cold path: staging/<digest> exists.
    staging = os.path.join(cache, "staging", cbtest.digest_of(checksum))
    deadline = time.monotonic() + 20
    while not os.path.isdir(staging):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise Failure("the stalled holder never reached the cold path")
        time.sleep(0.02)
    return proc


def test_lock_timeout_and_takeover_of_a_killed_holder():
    src, zip_path, checksum = small_bundle()
    work = cbtest.fresh_dir("lk")
    cache = os.path.join(work, "cache")
    holder = stalled_holder(cache, checksum, os.path.join(work, "fifo"))
    try:
        started = time.monotonic()
        proc = ensure(cache, "file://" + zip_path, checksum, "--lock-timeout", "0.5")
        elapsed = time.monotonic() - started
        check_exit(proc, 8, "a start waiting on a held lock with --lock-timeout 0.5")
        check("lock" in proc.stderr and "--lock-timeout" in proc.stderr,
              "the lock timeout message says what to do: %r" % proc.stderr)
        check(elapsed < 10, "the lock wait was bounded (took %.1f s)" % elapsed)
        proc = ensure(cache, "file://" + zip_path, checksum,
                      env=cbtest.base_env({"COLDBOOT_LOCK_TIMEOUT": "0.3"}))
        check_exit(proc, 8, "COLDBOOT_LOCK_TIMEOUT bounds the wait too")
        check_equal(published(cache), [], "published while the holder is stuck")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    # The kernel dropped the dead holder's flock: the next start takes over and cleans up.
    proc = ensure(cache, "file://" + zip_path, checksum, "--lock-timeout", "5")
    check_exit(proc, 0, "the start after the holder was killed")
    check(check_complete_or_absent(cache, src, checksum, "takeover"), "nothing was published")
    check_equal(leftovers(cache), [], "staging leftovers after the takeover")


# ---- crash consistency ----

KILL_KINDS = ["openat", "write", "pwrite64", "mkdirat", "symlinkat", "renameat,renameat2", "close",
              "fsync", "unlinkat", "ftruncate", "flock"]
MAX_POINTS_PER_KIND = 40


def count_calls(cache, url, checksum, kind, work):
    """How many calls of kind the busiest process of a clean cold start makes.

    strace's inject=...:when=N counts each process's calls on its own, and a cold start is
    two processes (the front and coldboot-cold): N past the busiest one's count hits nothing.
    """
    log = os.path.join(work, "count.log")
    env = cbtest.base_env()
    proc = cbtest.run(["strace", "-f", "-qq", "-o", log, "-e", "trace=" + kind, cbtest.COLDBOOT,
                       "ensure", "--url", url, "--checksum", checksum, "--dir", cache], env=env)
    check_exit(proc, 0, "cold start under strace")
    names = kind.split(",")
    per_pid = {}
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r"^(\d+)\s+(%s)\(" % "|".join(names), line)
            if m:
                per_pid[m.group(1)] = per_pid.get(m.group(1), 0) + 1
    return max(per_pid.values(), default=0)


def kill_then_restart(cache, url, checksum, src, kind, n, what):
    """Kills a start at its n-th call of kind: the cache holds the whole bundle or none of it, and
    a restart publishes it, with `current` right and nothing left in staging."""
    inject = "inject=%s:signal=SIGKILL:when=%d" % (kind, n)
    cbtest.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=" + kind, "-e", inject,
                cbtest.COLDBOOT, "ensure", "--url", url, "--checksum", checksum, "--dir", cache],
               env=cbtest.base_env())
    check_complete_or_absent(cache, src, checksum, what)
    proc = ensure(cache, url, checksum)
    check_exit(proc, 0, "the restart " + what)
    check(check_complete_or_absent(cache, src, checksum, "restart " + what),
          "restart %s published nothing" % what)
    check_equal(leftovers(cache), [], "staging leftovers after the restart " + what)
    current = os.readlink(os.path.join(cache, "current"))
    check_equal(current, "bundles/" + cbtest.digest_of(checksum), "current " + what)
    cbtest.remove_tree(cache)


def test_sigkill_at_every_kth_call_then_restart():
    if not cbtest.strace_available():
        raise Skip("strace is not installed or cannot trace here")
    src, zip_path, checksum = small_bundle("crash")
    url = "file://" + zip_path
    covered = {}
    for kind in KILL_KINDS:
        work = cbtest.fresh_dir("k")
        total = count_calls(os.path.join(work, "probe"), url, checksum, kind, work)
        covered[kind] = 0
        if total == 0:
            continue
        step = max(1, -(-total // MAX_POINTS_PER_KIND))
        for n in range(1, total + 1, step):
            kill_then_restart(os.path.join(work, "cache-%d" % n), url, checksum, src, kind, n,
                              "after SIGKILL at %s #%d" % (kind, n))
            covered[kind] += 1
    total_points = sum(covered.values())
    print("kill points covered: %d (%s)" % (
        total_points, ", ".join("%s %d" % (k, v) for k, v in covered.items())), flush=True)
    check(total_points >= 50, "too few kill points: %d" % total_points)


STREAM_KILL_KINDS = ["pwrite64", "fallocate", "openat", "mkdirat,symlinkat", "unlinkat"]
STREAM_POINTS_PER_KIND = 4


def test_sigkill_while_unpacking_during_the_download_then_restart():
    """The same over HTTP with a bundle big enough to be unpacked while it downloads."""
    if not cbtest.strace_available():
        raise Skip("strace is not installed or cannot trace here")
    from test_stream import STREAMING, make_big_tree  # noqa: E402 (a sibling test module)
    work = cbtest.fresh_dir("skill")
    src = make_big_tree(os.path.join(work, "src"))
    www = os.path.join(work, "www")
    os.makedirs(www)
    zip_path = cbtest.zip_with_python(src, os.path.join(www, "big.zip"))
    checksum = cbtest.coldboot_hash(zip_path)
    covered = 0
    with cbtest.StaticServer(www, bytes_per_second=50e6) as server:
        url = server.url("big.zip")
        proc = ensure(os.path.join(work, "clean"), url, checksum)
        check_exit(proc, 0, "clean streamed start")
        check(STREAMING in proc.stderr, "the clean start did not stream: %r" % proc.stderr[-800:])
        for kind in STREAM_KILL_KINDS:
            total = count_calls(os.path.join(work, "probe-" + kind), url, checksum, kind, work)
            step = max(1, total // STREAM_POINTS_PER_KIND)
            for n in range(max(1, step // 2), total + 1, step):
                kill_then_restart(os.path.join(work, "cache-%s-%d" % (kind, n)), url, checksum,
                                  src, kind, n, "after SIGKILL at %s #%d while streaming" % (kind, n))
                covered += 1
    print("streaming kill points covered: %d" % covered, flush=True)
    check(covered >= 10, "too few streaming kill points: %d" % covered)


def cache_writes(cache, url, checksum, work, call="write"):
    """For each process of a clean cold start, front first: the numbers n of its write() calls
    (or call's) that write into the cache (its n-th write).

    A cold start is two processes, the front and coldboot-cold (bootstrap/cold.h), and strace's
    inject counts each process's calls on its own: the numbers are per process.
    """
    log = os.path.join(work, "writes.log")
    proc = cbtest.run(["strace", "-f", "-qq", "-y", "-o", log, "-e", "trace=" + call, cbtest.COLDBOOT,
                       "ensure", "--url", url, "--checksum", checksum, "--dir", cache],
                      env=cbtest.base_env())
    check_exit(proc, 0, "cold start under strace")
    order, counts, points = [], {}, {}
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r"^(\d+)\s+%s\(\d+<([^>]*)>" % call, line)
            if not m:
                continue
            pid = int(m.group(1))
            if pid not in counts:
                order.append(pid)
                counts[pid] = 0
            counts[pid] += 1
            if m.group(2).startswith(cache + "/"):
                points.setdefault(pid, []).append(counts[pid])
    return [points.get(pid, []) for pid in order]


def test_enospc_while_writing_cleans_up_and_exits_7():
    if not cbtest.strace_available():
        raise Skip("strace is not installed or cannot trace here")
    src, zip_path, checksum = small_bundle("nospc")
    url = "file://" + zip_path
    work = cbtest.fresh_dir("nospc")
    per_process = cache_writes(os.path.join(work, "probe"), url, checksum, work)
    check_equal(len(per_process), 2, "processes that write into the cache (front, helper)")
    front, helper = per_process
    check(len(front) >= 1 and len(helper) >= 4, "writes into the cache: %s" % per_process)
    real_helper = os.path.join(os.path.dirname(cbtest.COLDBOOT), "coldboot-cold")
    # Early (the download), middle and late (the unpack) writes of the helper, traced alone
    # through a wrapper; then the front's own (the marker), with the helper untraced.
    runs = [("helper", "write", n) for n in sorted({helper[0], helper[len(helper) // 2], helper[-1]})]
    runs += [("front", "write", n) for n in front]
    # The download itself is written with pwrite (at its offset): its first and last writes.
    pwrites = cache_writes(os.path.join(work, "probe-p"), url, checksum, work, "pwrite64")
    check(len(pwrites) == 2 and len(pwrites[1]) >= 1, "pwrites into the cache: %s" % pwrites)
    runs += [("helper", "pwrite64", n) for n in sorted({pwrites[1][0], pwrites[1][-1]})]
    for who, call, n in runs:
        cache = os.path.join(work, "cache-%s-%s-%d" % (who, call, n))
        inject = ["strace", "-qq", "-o", os.devnull, "-e", "trace=" + call,
                  "-e", "inject=%s:error=ENOSPC:when=%d" % (call, n)]
        argv = ["ensure", "--url", url, "--checksum", checksum, "--dir", cache]
        env = cbtest.without_leak_check(cbtest.base_env())
        if who == "helper":
            wrapper = os.path.join(work, "helper-%s-%d" % (call, n))
            cbtest.write_file(wrapper, "#!/bin/sh\nexec %s %s \"$@\"\n"
                              % (" ".join(inject), real_helper), mode=0o755)
            env["COLDBOOT_COLD_EXE"] = wrapper
            proc = cbtest.run([cbtest.COLDBOOT] + argv, env=env)
        else:
            proc = cbtest.run(inject + [cbtest.COLDBOOT] + argv, env=env)
        what = "ENOSPC at the %s's %s #%d" % (who, call, n)
        check_exit(proc, 7, what)
        check("space" in proc.stderr.lower(), "%s: message mentions space: %r" % (what, proc.stderr))
        check_equal(published(cache), [], "published after " + what)
        check_equal(leftovers(cache), [], "staging leftovers after " + what)
        check_exit(ensure(cache, url, checksum), 0, "the start after " + what)
        check(check_complete_or_absent(cache, src, checksum, "after " + what), "not published")


def test_space_evicts_older_bundles_then_exits_7():
    if shutil.which("unshare") is None:
        raise Skip("unshare is not installed")
    work = cbtest.fresh_dir("space")
    zips = {}
    for name, data in (("a", os.urandom(900 * 1024)), ("b", os.urandom(900 * 1024)),
                       ("c", os.urandom(900 * 1024)), ("big", b"\0" * (2500 * 1024))):
        src = os.path.join(work, name)
        cbtest.write_file(os.path.join(src, "data.bin"), data)
        zip_path = os.path.join(work, name + ".zip")
        cbtest.zip_with_infozip(src, zip_path)  # deflated: "big" is a small zip
        zips[name] = (zip_path, cbtest.coldboot_hash(zip_path))
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    lines = ["set -u", "mount -t tmpfs -o size=3m,mode=0755 tmpfs %s || exit 99" % mnt]
    for name in ("a", "b", "c", "big"):
        zip_path, checksum = zips[name]
        lines.append('"%s" ensure --url file://%s --checksum %s --dir %s/cache >/dev/null 2>%s/%s.err;'
                     ' echo "%s=$?"' % (cbtest.COLDBOOT, zip_path, checksum, mnt, work, name, name))
        lines.append("echo %s-bundles=$(ls %s/cache/bundles | tr '\\n' ' ')" % (name, mnt))
    proc = cbtest.run(["unshare", "-m", "sh", "-c", "\n".join(lines)])
    if proc.returncode == 99 or "Operation not permitted" in proc.stderr:
        raise Skip("cannot mount a small tmpfs here: %s" % proc.stderr.strip()[:200])
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    digest = {name: cbtest.digest_of(zips[name][1]) for name in zips}
    check_equal(out.get("a"), "0", "first bundle")
    check_equal(out.get("b"), "0", "second bundle")
    check_equal(out.get("c"), "0", "third bundle (needs an eviction)")
    check_equal(sorted(out.get("c-bundles", "").split()), sorted([digest["b"], digest["c"]]),
                "the oldest bundle not in use was evicted")
    check_equal(out.get("big"), "7", "a bundle that cannot fit")
    with open(os.path.join(work, "big.err")) as f:
        message = f.read()
    check("needs" in message and "free" in message and "ephemeral storage" in message,
          "the message says what is needed, what is free, and what to do: %r" % message)
    check(digest["c"] in out.get("big-bundles", ""), "current bundle kept: %r" % out)


# ---- damaged state ----


def install(cache, zip_path, checksum):
    proc = ensure(cache, "file://" + zip_path, checksum)
    check_exit(proc, 0, "install")
    return os.path.join(cache, "bundles", cbtest.digest_of(checksum))


def test_damaged_markers_are_repaired():
    src, zip_path, checksum = small_bundle()
    for damage in ("empty", "truncated", "foreign", "missing", "symlink"):
        cache = os.path.join(cbtest.fresh_dir("dm"), "cache")
        bundle = install(cache, zip_path, checksum)
        marker = os.path.join(bundle, cbtest.MARKER_NAME)
        with open(marker) as f:
            text = f.read()
        os.unlink(marker)
        if damage == "empty":
            open(marker, "w").close()
        elif damage == "truncated":
            with open(marker, "w") as f:
                f.write(text[: len(text) // 2])
        elif damage == "foreign":
            with open(marker, "w") as f:
                f.write('{"name": "not coldboot", "checksum": "%s"}\n' % checksum)
        elif damage == "symlink":
            os.symlink("/etc/hostname", marker)
        os.unlink(os.path.join(bundle, "bin", "tool"))  # the tree is damaged too
        proc = ensure(cache, "file://" + zip_path, checksum, "--stats=" + cache + ".jsonl")
        check_exit(proc, 0, "start with a %s marker" % damage)
        check(check_complete_or_absent(cache, src, checksum, damage), "nothing published")
        with open(cache + ".jsonl") as f:
            check_equal(json.loads(f.readline())["outcome"], "repair", "outcome (%s)" % damage)


def test_current_link_to_missing_bundle_and_dead_staging():
    src, zip_path, checksum = small_bundle()
    cache = os.path.join(cbtest.fresh_dir("cur"), "cache")
    install(cache, zip_path, checksum)
    current = os.path.join(cache, "current")
    os.unlink(current)
    os.symlink("bundles/0123456789abcdef0123456789abcdef", current)
    # A dead process's staging tree and a stray temporary link.
    cbtest.write_file(os.path.join(cache, "staging", "deadbeef", "half", "file"), "partial")
    proc = ensure(cache, "file:///nonexistent.zip", checksum)
    check_exit(proc, 0, "warm start with a stale current link (no download needed)")
    check_equal(os.readlink(current), "bundles/" + cbtest.digest_of(checksum), "current repaired")
    # A cold start (another checksum) cleans the dead staging tree under the lock.
    other_src = os.path.join(cbtest.fresh_dir("o"), "src")
    cbtest.write_file(os.path.join(other_src, "x.txt"), "other")
    other_zip = os.path.join(os.path.dirname(other_src), "o.zip")
    cbtest.zip_with_python(other_src, other_zip)
    other = cbtest.coldboot_hash(other_zip)
    check_exit(ensure(cache, "file://" + other_zip, other), 0, "install of a second bundle")
    check_equal(leftovers(cache), [], "staging leftovers")
    check_equal(os.readlink(current), "bundles/" + cbtest.digest_of(other), "current moved")


def test_unsafe_cache_directories_are_refused():
    src, zip_path, checksum = small_bundle()
    base = cbtest.fresh_dir("unsafe")
    world = os.path.join(base, "world")
    os.mkdir(world)
    os.chmod(world, 0o777)
    proc = ensure(world, "file://" + zip_path, checksum)
    check_exit(proc, 3, "world-writable cache")
    check("writable" in proc.stderr, "message says why: %r" % proc.stderr)
    link = os.path.join(base, "link")
    real = os.path.join(base, "real")
    os.mkdir(real)
    os.symlink(real, link)
    proc = ensure(link, "file://" + zip_path, checksum)
    check_exit(proc, 3, "symlinked cache")
    check_equal(os.listdir(real), [], "nothing written through the symlink")
    if os.geteuid() == 0:
        foreign = os.path.join(base, "foreign")
        os.mkdir(foreign)
        os.chown(foreign, 65534, 65534)
        proc = ensure(foreign, "file://" + zip_path, checksum)
        check_exit(proc, 3, "cache owned by another user")
        check("belongs to uid 65534" in proc.stderr, "message names the owner: %r" % proc.stderr)


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
