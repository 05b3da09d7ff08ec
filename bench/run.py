#!/usr/bin/env python3
"""coldboot's cold/warm start benchmark (issue 7). Usually started through bench/run.sh.

    bench/run.py [--reps N] [--quick] [--bundles sitepkgs,browser,nodemods] [--zip NAME=PATH]...
                 [--fs tmpfs,ext4]
                 [--coldboot PATH] [--warm-runs N] [--no-profile] [--keep]
                 [--results FILE] [--docs DIR]

What it does, in one run:
  1. builds (once, cached under $BENCH_DIR, default /dev/shm/coldboot-bench) three bundles:
     sitepkgs (~110 MB in ~24k files), browser (~155 MB, one ~110 MB binary) and nodemods
     (~110 MB in ~45k small files and ~7.8k directories), see gen_bundles.py; or a zip of
     your own (--zip NAME=PATH);
  2. serves them from nginx on 127.0.0.1 (the fast range-capable server; a Python server only
     if nginx is missing, and it says so) and from the verifying S3 peer @20minutes/s3rver
     (objects put with Debian's /usr/bin/aws, path style, s3v4);
  3. for each bundle x filesystem (tmpfs /dev/shm, ext4 /tmp) runs every contender once per
     round, round-robin with a rotating start, --reps rounds after one untimed warm-up round;
     every run writes into a directory of its own that did not exist before; tmpfs rounds are
     deleted between rounds (then sync and a pause), ext4 is deleted only at the very end;
  4. measures warm starts against /bin/true with hyperfine (many runs per sample), peak RSS
     and peak file-system use during a cold start, and where the cold path's time goes
     (strace -c, perf with software events, callgrind on a small bundle);
  5. writes $BENCH_DIR/results.json, docs/benchmarks.md and docs/benchmarks.svg, and prints
     PASS/MISS per target.
"""
import argparse
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import gen_bundles  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402

RUN_TIMEOUT_S = 300
SERVER_MAX_S = 3 * 3600


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---- one measured process ----


TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_measured(argv, env, timeout_s=RUN_TIMEOUT_S, stderr_path=None, cwd=None):
    """Runs argv; returns wall seconds (fork to exit), CPU seconds and peak RSS of its tree.

    The command is started through GNU time, a small C program: a child forked straight from
    this Python process would report Python's own RSS as its peak (Linux carries the RSS
    high-water mark across fork and exec), so wait4's figure here would be wrong.
    """
    rss_path = None
    if TIME_BIN:
        rss_path = (stderr_path or os.path.join("/dev/shm", "bench-%d" % os.getpid())) + ".rss"
        argv = [TIME_BIN, "-f", "%M", "-o", rss_path, "--"] + list(argv)
    err_f = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err_f, start_new_session=True, cwd=cwd)
        timer = threading.Timer(timeout_s, lambda: _kill_group(proc.pid))
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stderr_path:
            err_f.close()
    maxrss_kb, rss_src = ru.ru_maxrss, "wait4 (includes the Python parent's RSS)"
    if rss_path:
        try:
            with open(rss_path) as f:
                maxrss_kb, rss_src = int(f.read().split()[-1]), "GNU time"
        except (OSError, ValueError, IndexError):
            pass
        try:
            os.unlink(rss_path)
        except OSError:
            pass
    return {"wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "maxrss_kb": maxrss_kb, "rss_source": rss_src, "rc": proc.returncode}


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(path, n=400):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-n:].decode(errors="replace").strip()
    except OSError:
        return ""


# ---- file-system helpers ----


def fs_type(path):
    return fs_mount(path)[0]


def fs_mount(path):
    """(type, options) of the mount holding path, from /proc/mounts (longest mount point)."""
    path = os.path.realpath(path)
    best, kind, opts = "", "?", ""
    try:
        with open("/proc/mounts") as f:
            for ln in f:
                p = ln.split()
                if len(p) < 3:
                    continue
                mnt = p[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind, opts = mnt, p[2], p[3] if len(p) > 3 else ""
    except OSError:
        pass
    return kind, opts


def fs_used_bytes(path):
    v = os.statvfs(path)
    return (v.f_blocks - v.f_bfree) * v.f_frsize


class FsSampler:
    """Samples a file system's used bytes every interval_s in a thread; keeps the peak."""

    def __init__(self, path, interval_s=0.01):
        self.path = path
        self.interval_s = interval_s
        self.base = fs_used_bytes(path)
        self.peak = self.base
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            u = fs_used_bytes(self.path)
            self.samples += 1
            if u > self.peak:
                self.peak = u
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.end = fs_used_bytes(self.path)


def tree_entries(root):
    """Every non-directory entry under root (os.DirEntry), without following links."""
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    yield e


def count_tree(root):
    """(non-directory entries, regular-file bytes) under root, without following links."""
    n = 0
    total = 0
    for e in tree_entries(root):
        n += 1
        if e.is_file(follow_symlinks=False):
            total += e.stat(follow_symlinks=False).st_size
    return n, total


def evict_tree(root):
    """Drops the page cache of every file under root (written back first by the caller's sync).

    The ext4 runs are kept until the end, and their pages with them: a full benchmark writes
    ~20 GB there, which fills this 24 GB machine's memory by the second bundle, and from then
    on every run also pays for reclaiming someone else's pages. Untimed.
    """
    for e in tree_entries(root):
        if not e.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def load_now():
    """1-minute load average and the CPU pressure counter (total µs some task waited)."""
    out = {"t": time.monotonic()}
    try:
        with open("/proc/loadavg") as f:
            out["loadavg1"] = float(f.read().split()[0])
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/pressure/cpu") as f:
            for ln in f:
                if ln.startswith("some"):
                    out["cpu_some_us"] = int(ln.split("total=")[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def load_between(a, b):
    out = {"seconds": b["t"] - a["t"], "loadavg1": b.get("loadavg1")}
    if "cpu_some_us" in a and "cpu_some_us" in b and b["t"] > a["t"]:
        out["cpu_some_pct"] = 100.0 * (b["cpu_some_us"] - a["cpu_some_us"]) / 1e6 / (b["t"] - a["t"])
    return out


def sync_pause(seconds):
    os.sync()
    time.sleep(seconds)


_settle_dirs = itertools.count()  # one fresh directory per probe, over the whole benchmark
SETTLE_FILES = 500
SETTLE_OK_S = 0.060  # 500 small files: 15-40 ms when settled here, 110-340 ms while stalled
SETTLE_MAX_S = 300
SETTLE_EVERY_S = 5
# An ext4 without a journal (this one) does not hand out an inode deleted less than 60 s ago,
# or 360 s while its inode-table block is still dirty (recently_deleted() in the kernel's
# fs/ext4/ialloc.c): every creation looks up the inode-table block of each such free inode
# it passes. While a large deleted tree is that recent, creating files costs several times
# more (write_floor of nodemods: 5.1-5.7 s at 1.5-3 minutes after the benchmark deleted its
# runs, 1.24 s at 6 minutes, 0.65 s later). A probe of a few hundred files does not see it
# (a fresh directory lands in a clean inode group); the time since the deletion does.
DELETE_STAMP = ".coldboot-bench-deleted"
RECENT_DELETE_S = 370


def note_deleted(ext4_dir):
    """Records when a benchmark last deleted a tree on ext4 (wait_settled reads it)."""
    try:
        with open(os.path.join(ext4_dir, DELETE_STAMP), "w") as f:
            f.write("%.0f\n" % time.time())
    except OSError:
        pass


def since_deleted(ext4_dir):
    try:
        with open(os.path.join(ext4_dir, DELETE_STAMP)) as f:
            return time.time() - float(f.read())
    except (OSError, ValueError):
        return None


def wait_settled(root, log, ext4_dir=None):
    """Waits (bounded) until creating files on root is fast again.

    First until RECENT_DELETE_S have passed since an earlier benchmark deleted its ext4 runs
    (see above). Then, as a deletion by anything else may also be recent, until a probe is
    fast: each creates SETTLE_FILES small files in a fresh directory under root, kept until
    the benchmark's end (deleting them would slow the next probe). Returns the seconds waited,
    the probes, the last probe.
    """
    t0 = time.monotonic()
    ago = since_deleted(ext4_dir) if ext4_dir else None
    if ago is not None and 0 <= ago < RECENT_DELETE_S:
        log("waiting %.0f s: an earlier benchmark deleted its ext4 runs %.0f s ago"
            % (RECENT_DELETE_S - ago, ago))
        time.sleep(RECENT_DELETE_S - ago)
    probes = 0
    while True:
        d = os.path.join(root, "settle-%d" % next(_settle_dirs))
        os.makedirs(d)
        t = time.monotonic()
        for i in range(SETTLE_FILES):
            fd = os.open(os.path.join(d, "f%d" % i), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
            os.write(fd, b"x" * 100)
            os.close(fd)
        last = time.monotonic() - t
        probes += 1
        waited = time.monotonic() - t0
        if last <= SETTLE_OK_S or waited >= SETTLE_MAX_S:
            if last > SETTLE_OK_S:
                log("warning: creating files on %s is still slow after %.0f s (%.0f ms for %d)"
                    % (root, waited, 1000 * last, SETTLE_FILES))
            elif probes > 1:
                log("waited %.0f s for %s to settle (%d probes)" % (waited, root, probes))
            return {"waited_s": waited, "probes": probes, "last_probe_s": last}
        time.sleep(SETTLE_EVERY_S)


# ---- contenders ----

# The interpreter itself, not a pyenv shim (a shim is a bash script that costs ~50 ms).
PYTHON = os.path.realpath(sys.executable)
PYZIP = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])"


class Bench:
    def __init__(self, args):
        self.args = args
        self.cb = os.path.abspath(args.coldboot)
        self.write_floor = os.path.join(os.path.dirname(self.cb), "write_floor")
        self.bench_dir = args.bench_dir
        self.www = os.path.join(self.bench_dir, "bundles")
        self.base_env = {k: os.environ[k] for k in ("PATH", "HOME", "TERM") if k in os.environ}
        self.base_env["LC_ALL"] = "C"
        self.http = None
        self.http_kind = None
        self.s3 = None
        self.s3_kind = None
        self.s3_env = None
        self.cb_s3_ok = False
        self.cb_s3_reason = ""
        self.s3_curl_ok = False
        self.meta = {}
        self.sums = {}

    # commands: each returns (argv, env, dest or None); dest is checked after the run
    def contenders(self):
        c = [
            ("cb_http", "coldboot cold (nginx)", self.c_cb_http),
            ("cb_s3", "coldboot cold (s3rver)", self.c_cb_s3),
            ("curl_unzip", "curl + unzip (nginx)", self.c_curl_unzip),
            ("aws_unzip", "aws s3 cp + unzip (s3rver)", self.c_aws_unzip),
            ("curl_pyzip", "curl + python zipfile (nginx)", self.c_curl_pyzip),
            ("curl_only", "download only: curl (nginx)", self.c_curl_only),
            ("cb_paced", "coldboot cold (nginx at 100 MB/s)", self.c_cb_paced),
            ("curl_paced", "download only: curl (nginx at 100 MB/s)", self.c_curl_paced),
            ("s3_only", "download only: curl --aws-sigv4 (s3rver)", self.c_s3_only),
            ("unzip_local", "inflate only: unzip -q local zip", self.c_unzip_local),
            ("cb_file", "coldboot cold (file://)", self.c_cb_file),
            ("write_floor", "write only: the tree from memory (C)", self.c_write_floor),
        ]
        out = []
        for key, label, fn in c:
            if key == "cb_s3" and not self.cb_s3_ok:
                continue
            if key == "s3_only" and not self.s3_curl_ok:
                continue
            if key == "write_floor" and not os.access(self.write_floor, os.X_OK):
                continue
            if key in ("cb_paced", "curl_paced") and not (self.http_kind or "").startswith("nginx"):
                continue
            out.append((key, label, fn))
        return out

    def url(self, b):
        return "%s/%s.zip" % (self.http, b)

    def zip_path(self, b):
        return os.path.join(self.www, b + ".zip")

    def cb_argv(self, url, b, d):
        return [self.cb, "ensure", "--url", url, "--checksum", self.sums[b], "--dir",
                os.path.join(d, "cache")]

    def cb_dest(self, b, d):
        return os.path.join(d, "cache", "bundles", self.sums[b].split(":", 1)[1])

    def c_cb_http(self, b, d):
        return self.cb_argv(self.url(b), b, d), self.base_env, self.cb_dest(b, d)

    def c_cb_s3(self, b, d):
        env = dict(self.base_env, **self.s3_env)
        return (self.cb_argv("s3://%s/%s.zip" % (servers.S3_BUCKET, b), b, d), env,
                self.cb_dest(b, d))

    def c_cb_file(self, b, d):
        return self.cb_argv("file://" + self.zip_path(b), b, d), self.base_env, self.cb_dest(b, d)

    def c_curl_unzip(self, b, d):
        return (["bash", "-c", 'curl -s -f -o "$1/x.zip" "$2" && unzip -q "$1/x.zip" -d "$1/out"',
                 "_", d, self.url(b)], self.base_env, os.path.join(d, "out"))

    def c_aws_unzip(self, b, d):
        env = dict(self.base_env, **self.s3_env)
        return (["bash", "-c", '"$4" --endpoint-url "$3" s3 cp --only-show-errors "$2" "$1/x.zip" '
                 '&& unzip -q "$1/x.zip" -d "$1/out"', "_", d,
                 "s3://%s/%s.zip" % (servers.S3_BUCKET, b), self.s3, servers.AWS], env,
                os.path.join(d, "out"))

    def c_curl_pyzip(self, b, d):
        return (["bash", "-c", 'curl -s -f -o "$1/x.zip" "$2" && "$4" -c "$3" "$1/x.zip" "$1/out"',
                 "_", d, self.url(b), PYZIP, PYTHON], self.base_env, os.path.join(d, "out"))

    def paced_url(self, b):
        return "%s/paced/%s.zip" % (self.http, b)

    def c_cb_paced(self, b, d):
        return self.cb_argv(self.paced_url(b), b, d), self.base_env, self.cb_dest(b, d)

    def c_curl_paced(self, b, d):
        return ["curl", "-s", "-f", "-o", "/dev/null", self.paced_url(b)], self.base_env, None

    def c_curl_only(self, b, d):
        return ["curl", "-s", "-f", "-o", "/dev/null", self.url(b)], self.base_env, None

    def c_s3_only(self, b, d):
        return (["curl", "-s", "-f", "--aws-sigv4", "aws:amz:%s:s3" % servers.S3_REGION, "--user",
                 "%s:%s" % (servers.S3_KEY_ID, servers.S3_SECRET),
                 "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-o", "/dev/null",
                 "%s/%s/%s.zip" % (self.s3, servers.S3_BUCKET, b)], self.base_env, None)

    def c_write_floor(self, b, d):
        # As many threads as coldboot's extractor starts here: one per usable CPU, at most 8.
        threads = max(1, min(8, len(os.sched_getaffinity(0))))
        return ([self.write_floor, self.manifest_path(b), os.path.join(d, "out"), str(threads)],
                self.base_env, os.path.join(d, "out"))

    def manifest_path(self, b):
        return os.path.join(self.www, b + ".manifest")

    def write_manifest(self, b):
        """The zip's tree for write_floor: directories, file sizes, symlinks (bench/write_floor.c)."""
        made = set()

        def mkdir_p(out, d):
            # Each directory once, its parents before it: one mkdir each, as coldboot does.
            if d and d not in made:
                mkdir_p(out, os.path.dirname(d))
                made.add(d)
                out.write("d %s\n" % d)

        with zipfile.ZipFile(self.zip_path(b)) as z, open(self.manifest_path(b), "w") as out:
            for i in z.infolist():
                kind = (i.external_attr >> 16) & 0o170000
                if i.is_dir():
                    mkdir_p(out, i.filename.rstrip("/"))
                elif kind == 0o120000:
                    mkdir_p(out, os.path.dirname(i.filename))
                    out.write("l %s\t%s\n" % (z.read(i).decode(), i.filename))
                else:
                    mkdir_p(out, os.path.dirname(i.filename))
                    out.write("f %d %s\n" % (i.file_size, i.filename))

    def c_unzip_local(self, b, d):
        return (["unzip", "-q", self.zip_path(b), "-d", os.path.join(d, "out")], self.base_env,
                os.path.join(d, "out"))

    # ---- setup ----

    def setup(self):
        os.makedirs(self.www, exist_ok=True)
        for b in self.args.bundles:
            t0 = time.monotonic()
            if b in self.args.zips:
                self.meta[b] = gen_bundles.adopt(self.www, b, self.args.zips[b])
            else:
                self.meta[b] = gen_bundles.build(self.www, b)
            log("bundle %s: %d files, %.1f MB unpacked, %.1f MB zip (%.1f s)" % (
                b, self.meta[b]["files"], self.meta[b]["unpacked_bytes"] / 1e6,
                self.meta[b]["zip_bytes"] / 1e6, time.monotonic() - t0))
            r = subprocess.run([self.cb, "hash", self.zip_path(b)], capture_output=True, text=True,
                               check=True)
            self.sums[b] = r.stdout.split()[0]
            self.write_manifest(b)
        self.http, self.http_kind = servers.start_http(self.www, self.bench_dir, SERVER_MAX_S, log)
        log("http: %s at %s" % (self.http_kind, self.http))
        s3_data = os.path.join(self.bench_dir, "s3data")
        if os.path.exists(s3_data):
            shutil.rmtree(s3_data)
        os.makedirs(s3_data)
        self.s3, self.s3_kind = servers.start_s3(s3_data, SERVER_MAX_S)
        self.s3_env = servers.aws_env(self.bench_dir, self.s3)
        log("s3: %s at %s" % (self.s3_kind, self.s3))
        env = dict(self.base_env, **self.s3_env)
        for b in self.args.bundles:
            t0 = time.monotonic()
            servers.aws_put(env, self.s3, self.zip_path(b), b + ".zip")
            log("aws s3 cp %s.zip -> s3rver: %.1f s" % (b, time.monotonic() - t0))
        self.probe_s3()

    def probe_s3(self):
        """Does this coldboot do s3:// yet, and does curl's SigV4 pass s3rver's checks?"""
        b = self.args.bundles[0]
        probe = os.path.join(self.bench_dir, "probe-%d" % os.getpid())
        os.makedirs(probe)
        argv, env, dest = self.c_cb_s3(b, probe)
        res = run_measured(argv, env, stderr_path=os.path.join(probe, "stderr"))
        if res["rc"] == 0 and os.path.isdir(dest):
            self.cb_s3_ok = True
        else:
            self.cb_s3_reason = "coldboot ensure --url s3://... exited %d: %s" % (
                res["rc"], tail(os.path.join(probe, "stderr"), 300))
        log("coldboot s3:// probe: %s" % ("works" if self.cb_s3_ok else self.cb_s3_reason))
        argv, env, _ = self.c_s3_only(b, probe)
        r = subprocess.run(argv, env=env, capture_output=True, timeout=RUN_TIMEOUT_S)
        self.s3_curl_ok = r.returncode == 0
        log("curl --aws-sigv4 probe: %s" % ("works" if self.s3_curl_ok else "exit %d" % r.returncode))
        shutil.rmtree(probe)

    # ---- one bundle x file system ----

    def run_group(self, b, fs_name, fs_root):
        contenders = self.contenders()
        group_root = os.path.join(fs_root, "%s-%s" % (b, fs_name))
        os.makedirs(group_root, exist_ok=True)
        res = {"bundle": b, "fs": fs_name, "fs_type": fs_type(fs_root), "path": fs_root,
               "entries_created": 0,
               "contenders": {k: {"label": l, "samples": [], "failures": []}
                              for k, l, _ in contenders}, "warm": {}}
        want_entries = self.meta[b]["files"] + self.meta[b]["symlinks"]
        warm_dir = os.path.join(group_root, "warm")
        self.install_warm(b, warm_dir)
        rounds = self.args.reps + 1
        for r in range(rounds):
            timed = r > 0
            rot = r % len(contenders)
            order = contenders[rot:] + contenders[:rot]
            round_dir = os.path.join(group_root, "round%d" % r)
            os.makedirs(round_dir)
            t_round = time.monotonic()
            load0 = load_now()
            for key, label, fn in order:
                d = os.path.join(round_dir, key)
                os.makedirs(d)
                # Untimed: the runs before this one leave no writeback behind to compete
                # with it for the disk and the two CPUs (a kworker flushing 180 MB).
                os.sync()
                argv, env, dest = fn(b, d)
                errp = os.path.join(round_dir, key + ".stderr")
                srv0 = {k: servers.session_cpu_s(v) for k, v in servers.sessions.items()}
                m = run_measured(argv, env, stderr_path=errp)
                # The servers' own CPU during the run: they share the two cores with it.
                m["server_cpu_s"] = {k: servers.session_cpu_s(v) - srv0[k]
                                     for k, v in servers.sessions.items()}
                ok = m["rc"] == 0
                why = "exit %d: %s" % (m["rc"], tail(errp)) if not ok else ""
                if ok and dest is not None:
                    n, _ = count_tree(dest)
                    res["entries_created"] += n
                    if key.startswith("cb_"):
                        n -= 1  # the marker
                    if n != want_entries:
                        ok = False
                        why = "%d entries in %s, expected %d" % (n, dest, want_entries)
                if not ok:
                    log("FAILED %s %s %s: %s" % (b, fs_name, key, why))
                    res["contenders"][key]["failures"].append(why)
                elif timed:
                    res["contenders"][key]["samples"].append(m)
                if fs_name != "tmpfs":
                    os.sync()
                    evict_tree(d)
            self.warm_round(res, b, warm_dir, timed)
            if timed:
                res.setdefault("rounds", []).append(load_between(load0, load_now()))
            log("%s/%s round %d%s: %.1f s" % (b, fs_name, r, "" if timed else " (warm-up, untimed)",
                                              time.monotonic() - t_round))
            if fs_name == "tmpfs" and not self.args.keep:
                shutil.rmtree(round_dir)
            sync_pause(self.args.pause)
        res["extras"] = self.extras(b, fs_name, group_root)
        return res

    def install_warm(self, b, warm_dir):
        argv = self.cb_argv("file://" + self.zip_path(b), b, warm_dir)
        r = subprocess.run(argv, env=self.base_env, capture_output=True, timeout=RUN_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError("cannot install the warm-start cache: %s" % r.stderr.decode()[-300:])

    def warm_cmds(self, b, warm_dir):
        url = "file://" + self.zip_path(b)
        base = [self.cb, "--url", url, "--checksum", self.sums[b], "--dir", os.path.join(warm_dir,
                                                                                       "cache")]
        return [
            ("true", "/bin/true", ["/bin/true"]),
            ("cb_ensure", "coldboot ensure (warm)", [self.cb, "ensure"] + base[1:]),
            ("cb_exec_true", "coldboot -- /bin/true (warm)", base + ["--", "/bin/true"]),
        ]

    def warm_round(self, res, b, warm_dir, timed):
        cmds = self.warm_cmds(b, warm_dir)
        for key, label, argv in cmds:
            slot = res["warm"].setdefault(key, {"label": label, "argv": argv, "samples": []})
            s = self.warm_sample(argv)
            if timed:
                slot["samples"].append(s)

    def warm_sample(self, argv):
        """Median seconds of one exec of argv over --warm-runs runs (one sample)."""
        n = self.args.warm_runs
        hf = shutil.which("hyperfine")
        if hf:
            out = os.path.join(self.bench_dir, "hf-%d.json" % os.getpid())
            cmd = " ".join(shlex.quote(a) for a in argv)
            r = subprocess.run([hf, "-N", "--style", "none", "--warmup", "10", "--runs", str(n),
                                "--export-json", out, cmd], capture_output=True, text=True,
                               timeout=RUN_TIMEOUT_S, env=self.base_env)
            if r.returncode != 0:
                raise RuntimeError("hyperfine failed: %s" % r.stderr[-300:])
            with open(out) as f:
                data = json.load(f)["results"][0]
            os.unlink(out)
            return {"median_s": data["median"], "mean_s": data["mean"], "min_s": data["min"],
                    "runs": len(data["times"]), "tool": "hyperfine"}
        times = []
        for _ in range(10):
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(n):
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, self.base_env)
            os.waitpid(pid, 0)
            times.append(time.perf_counter() - t0)
        return {"median_s": statistics.median(times), "mean_s": statistics.mean(times),
                "min_s": min(times), "runs": n, "tool": "posix_spawn loop"}

    def extras(self, b, fs_name, group_root):
        """Untimed: peak RSS via /usr/bin/time -v, peak fs use, and phase times from --stats."""
        out = {}
        fs_root = group_root
        for key in ("cb_http", "curl_unzip", "unzip_local"):
            d = os.path.join(group_root, "extra-" + key)
            os.makedirs(d)
            argv, env, dest = getattr(self, "c_" + key)(b, d)
            stats_file = None
            if key == "cb_http":
                stats_file = os.path.join(group_root, "extra-cb_http.stats.jsonl")
                argv = argv + ["--stats=" + stats_file]
            tv = os.path.join(group_root, "extra-%s.time-v" % key)
            argv = ["/usr/bin/time", "-v", "-o", tv] + argv if os.path.exists("/usr/bin/time") else argv
            sync_pause(1.0)
            with FsSampler(fs_root) as s:
                m = run_measured(argv, env, stderr_path=os.path.join(group_root, "extra-%s.stderr"
                                                                     % key))
            n, tree_bytes = count_tree(dest)
            final_disk = disk_usage(dest)
            e = {"rc": m["rc"], "wall_s": m["wall_s"], "maxrss_kb": m["maxrss_kb"],
                 "peak_delta_bytes": s.peak - s.base, "end_delta_bytes": s.end - s.base,
                 "samples": s.samples, "tree_disk_bytes": final_disk, "tree_bytes": tree_bytes}
            if os.path.exists(tv):
                with open(tv) as f:
                    mm = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
                if mm:
                    e["time_v_maxrss_kb"] = int(mm.group(1))
            if stats_file and os.path.exists(stats_file):
                with open(stats_file) as f:
                    lines = [ln for ln in f if ln.strip().startswith("{")]
                if lines:
                    e["stats"] = json.loads(lines[-1])
            out[key] = e
            log("%s/%s extra %s: peak fs +%.1f MB (tree %.1f MB on disk), RSS %.1f MB" % (
                b, fs_name, key, e["peak_delta_bytes"] / 1e6, final_disk / 1e6,
                e.get("time_v_maxrss_kb", m["maxrss_kb"]) / 1024))
        return out

    # ---- where the time goes ----

    def profile(self, prof_root):
        out = {}
        b = "sitepkgs" if "sitepkgs" in self.args.bundles else self.args.bundles[0]
        out["bundle"] = b
        os.makedirs(prof_root, exist_ok=True)

        def fresh(name):
            d = os.path.join(prof_root, name)
            os.makedirs(d)
            return d

        # Phase split from coldboot's own stats record, both sources.
        for key in ("cb_http", "cb_file"):
            d = fresh("stats-" + key)
            argv, env, _ = getattr(self, "c_" + key)(b, d)
            sf = os.path.join(d, "stats.jsonl")
            m = run_measured(argv + ["--stats=" + sf], env)
            with open(sf) as f:
                rec = json.loads([ln for ln in f if ln.startswith("{")][-1])
            out["stats_" + key] = {"wall_s": m["wall_s"], "user_s": m["user_s"], "sys_s": m["sys_s"],
                                   "record": rec}
        # strace -c -f
        if shutil.which("strace"):
            for key in ("cb_http", "unzip_local"):
                d = fresh("strace-" + key)
                argv, env, _ = getattr(self, "c_" + key)(b, d)
                so = os.path.join(d, "strace.txt")
                m = run_measured(["strace", "-c", "-f", "-o", so] + argv, env)
                out["strace_" + key] = {"rc": m["rc"], "wall_s": m["wall_s"],
                                        "table": parse_strace(so)}
        # perf with software events (this VM exposes no hardware counters)
        if shutil.which("perf"):
            d = fresh("perf")
            argv, env, _ = self.c_cb_http(b, d)
            ps = os.path.join(d, "perf-stat.txt")
            r = subprocess.run(["perf", "stat", "-x", ",", "-o", ps, "-e",
                                "task-clock,page-faults,context-switches,cpu-migrations"] + argv,
                               env=env, capture_output=True, timeout=RUN_TIMEOUT_S)
            out["perf_stat"] = parse_perf_stat(ps) if r.returncode == 0 else {}
            hw = subprocess.run(["perf", "stat", "-x", ",", "-e", "instructions", "true"],
                                capture_output=True, text=True)
            out["perf_hw_counters"] = "not supported" not in hw.stderr and hw.returncode == 0
            d = fresh("perf-record")
            argv, env, _ = self.c_cb_http(b, d)
            pd = os.path.join(d, "perf.data")
            r = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-o", pd,
                                "--"] + argv, env=env, capture_output=True, timeout=RUN_TIMEOUT_S)
            if r.returncode == 0:
                rep = subprocess.run(["perf", "report", "-i", pd, "--stdio", "--no-children",
                                      "--sort", "dso,sym", "--percent-limit", "0.3"],
                                     capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
                out["perf_report"] = parse_perf_report(rep.stdout)
                rep = subprocess.run(["perf", "report", "-i", pd, "--stdio", "--no-children",
                                      "--sort", "dso"], capture_output=True, text=True,
                                     timeout=RUN_TIMEOUT_S)
                out["perf_dso"] = parse_perf_report(rep.stdout)
            if os.path.exists(pd):
                os.unlink(pd)
        # callgrind on the small bundle from file://: repeatable instruction counts
        if shutil.which("valgrind") and not self.args.no_callgrind:
            small = gen_bundles.build(self.www, "small")
            r = subprocess.run([self.cb, "hash", self.zip_path("small")], capture_output=True,
                               text=True, check=True)
            self.sums["small"] = r.stdout.split()[0]
            self.meta["small"] = small
            out["callgrind_bundle"] = small
            for key in ("cb_file", "unzip_local"):
                d = fresh("callgrind-" + key)
                argv, env, _ = getattr(self, "c_" + key)("small", d)
                t0 = time.monotonic()
                # A cold start is two processes (coldboot, then coldboot-cold): follow
                # children, one profile each, and count every instruction of both.
                r = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                                    "--callgrind-out-file=" + os.path.join(d, "callgrind.out.%p")]
                                   + argv, env=env, capture_output=True, text=True,
                                   timeout=RUN_TIMEOUT_S * 2)
                if r.returncode != 0:
                    out["callgrind_" + key] = {"error": r.stderr[-300:]}
                    continue
                parts = []
                for name in sorted(os.listdir(d)):
                    if name.startswith("callgrind.out."):
                        ann = subprocess.run(["callgrind_annotate", "--threshold=99",
                                              os.path.join(d, name)], capture_output=True,
                                             text=True, timeout=RUN_TIMEOUT_S)
                        parts.append(parse_callgrind(ann.stdout))
                # The busiest process's functions, everyone's instructions.
                main_part = max(parts, key=lambda x: x.get("total_ir", 0))
                main_part["total_ir"] = sum(x.get("total_ir", 0) for x in parts)
                main_part["processes"] = len(parts)
                out["callgrind_" + key] = main_part
                out["callgrind_" + key]["seconds"] = time.monotonic() - t0
                log("callgrind %s: %s Ir" % (key, format(out["callgrind_" + key].get("total_ir", 0),
                                                         ",")))
        return out


def disk_usage(path):
    r = subprocess.run(["du", "-s", "-B1", path], capture_output=True, text=True)
    try:
        return int(r.stdout.split()[0])
    except (IndexError, ValueError):
        return 0


def parse_strace(path):
    rows = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return rows
    for ln in lines:
        p = ln.split()
        if len(p) >= 5 and re.match(r"^\d+\.\d+$", p[0]) and p[-1] != "total":
            errors = int(p[4]) if len(p) == 6 else 0
            rows.append({"pct": float(p[0]), "seconds": float(p[1]), "usecs_per_call": int(p[2]),
                         "calls": int(p[3]), "errors": errors, "syscall": p[-1]})
        elif len(p) >= 4 and p[-1] == "total":
            rows.append({"pct": 100.0, "seconds": float(p[1]), "calls": int(p[3]),
                         "syscall": "total"})
    return rows


def parse_perf_stat(path):
    out = {}
    try:
        with open(path) as f:
            for ln in f:
                p = ln.strip().split(",")
                if len(p) >= 3 and p[0] and not ln.startswith("#"):
                    try:
                        out[p[2]] = float(p[0])
                    except ValueError:
                        out[p[2]] = p[0]
    except OSError:
        pass
    return out


def parse_perf_report(text):
    """Rows of `perf report --stdio`; addresses without a symbol (stripped static functions,
    such as zlib's inflate_fast) are summed per object into one row."""
    rows = []
    unnamed = {}
    for ln in text.splitlines():
        m = re.match(r"^\s+(\d+\.\d+)%\s+(\S+)\s*(?:\[[.k]\]\s+(.*))?$", ln)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), (m.group(3) or "").strip()
        if re.match(r"^0x[0-9a-f]+$", sym):
            unnamed[dso] = unnamed.get(dso, 0.0) + pct
            continue
        rows.append({"pct": pct, "dso": dso, "sym": sym})
    for dso, pct in unnamed.items():
        rows.append({"pct": pct, "dso": dso, "sym": "(addresses without a symbol, summed)"})
    rows.sort(key=lambda r: -r["pct"])
    return rows


def parse_callgrind(text):
    out = {"functions": []}
    m = re.search(r"^\s*([\d,]+)\s+(?:\(100\.0%\)\s+)?PROGRAM TOTALS", text, re.M)
    if m:
        out["total_ir"] = int(m.group(1).replace(",", ""))
    for ln in text.splitlines():
        mm = re.match(r"^\s*([\d,]+)\s+(?:\(\s*([\d.]+)%\)\s+)?(\S.*?)\s*$", ln)
        if mm and "PROGRAM TOTALS" not in ln and ":" in mm.group(3):
            ir = int(mm.group(1).replace(",", ""))
            where = mm.group(3)
            fn = where.split(":", 1)[1] if ":" in where else where
            fn = re.sub(r"\s*\[.*\]$", "", fn)
            obj = re.search(r"\[(.*)\]$", where)
            out["functions"].append({"ir": ir, "fn": fn,
                                     "obj": os.path.basename(obj.group(1)) if obj else ""})
            if len(out["functions"]) >= 25:
                break
    return out


# ---- machine ----


def machine_info(paths):
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            info["cpu"] = m.group(1).strip() if m else "?"
    except OSError:
        info["cpu"] = "?"
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
            info["mem_gib"] = round(int(m.group(1)) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="(.*)"', f.read(), re.M)
            info["os"] = m.group(1) if m else "?"
    except OSError:
        pass
    virt = []
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True) if shutil.which("lscpu") \
        else None
    if lscpu:
        m = re.search(r"^Hypervisor vendor:\s*(.*)$", lscpu.stdout, re.M)
        if m:
            virt.append("%s guest" % m.group(1).strip())
    if shutil.which("systemd-detect-virt"):
        c = subprocess.run(["systemd-detect-virt", "--container"], capture_output=True, text=True)
        if c.returncode == 0 and c.stdout.strip() not in ("", "none"):
            virt.append("in a %s container" % c.stdout.strip())
    info["virt"] = ", ".join(virt) or "none seen"
    info["fs"] = {k: {"path": p, "type": fs_mount(p)[0], "options": fs_mount(p)[1]}
                  for k, p in paths.items()}
    versions = {}
    for name, argv in (("curl", ["curl", "--version"]), ("unzip", ["unzip", "-v"]),
                       ("aws", [servers.AWS, "--version"]), ("node", ["node", "--version"]),
                       ("hyperfine", ["hyperfine", "--version"]),
                       ("python3", [PYTHON, "--version"])):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            versions[name] = (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[name] = "missing"
    info["versions"] = versions
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true",
                    help="one bundle (sitepkgs), 3 reps, 100 warm runs per sample (~5 minutes)")
    ap.add_argument("--bundles", default=None,
                    help="generated bundles to run (default sitepkgs,browser,nodemods)")
    ap.add_argument("--zip", action="append", default=[], metavar="NAME=PATH",
                    help="also run a zip of your own under NAME (alone unless --bundles is given)")
    ap.add_argument("--fs", default="tmpfs,ext4")
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH_DIR", "/dev/shm/coldboot-bench"))
    ap.add_argument("--ext4-dir", default=os.environ.get("BENCH_EXT4_DIR", "/tmp/coldboot-bench-ext4"))
    ap.add_argument("--coldboot", default=os.path.join(REPO, "build-bench", "coldboot"))
    ap.add_argument("--warm-runs", type=int, default=200)
    ap.add_argument("--pause", type=float, default=2.0, help="seconds after the sync between rounds")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep every run directory")
    ap.add_argument("--results", default=None)
    ap.add_argument("--docs", default=os.path.join(REPO, "docs"))
    ap.add_argument("--command", default=None, help="the command line to print as 'reproduce'")
    args = ap.parse_args()
    args.zips = {}
    for z in args.zip:
        name, eq, path = z.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name) or not os.path.isfile(path):
            ap.error("--zip wants NAME=PATH (NAME of letters, digits, - and _; PATH a file): %s" % z)
        if name in gen_bundles.BUNDLES or name in args.zips:
            ap.error("--zip: the name %s is taken" % name)
        args.zips[name] = path
    if args.bundles is None:
        args.bundles = "" if args.zips else "sitepkgs,browser,nodemods"
    if args.quick:
        args.bundles = "sitepkgs" if not args.zips else ""
        args.reps = min(args.reps, 3)
        args.warm_runs = min(args.warm_runs, 100)
    args.bundles = [b for b in args.bundles.split(",") if b] + list(args.zips)
    args.fs = [f for f in args.fs.split(",") if f]
    if not 1 <= args.reps <= 50 or not 10 <= args.warm_runs <= 2000:
        ap.error("--reps must be 1..50 and --warm-runs 10..2000")
    for b in args.bundles:
        if b not in gen_bundles.BUNDLES and b not in args.zips:
            ap.error("unknown bundle %s" % b)
    if not os.access(args.coldboot, os.X_OK):
        ap.error("no coldboot at %s (build it: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release "
                 "&& cmake --build build-bench -j2)" % args.coldboot)
    results_path = args.results or os.path.join(args.bench_dir, "results.json")
    os.makedirs(args.bench_dir, exist_ok=True)

    run_id = "%s-%d" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid())
    fs_roots = {"tmpfs": os.path.join(args.bench_dir, "runs", run_id),
                "ext4": os.path.join(args.ext4_dir, run_id)}
    cleanup_dirs = list(fs_roots.values())

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t_start = time.monotonic()
    t_wall = time.time()
    bench = Bench(args)
    try:
        for name in args.fs:
            os.makedirs(fs_roots[name], exist_ok=True)
        info = machine_info({"tmpfs": args.bench_dir, "ext4": os.path.dirname(fs_roots["ext4"])})
        for name in args.fs:
            want = {"tmpfs": "tmpfs", "ext4": "ext4"}[name]
            got = fs_type(fs_roots[name])
            if got != want:
                log("warning: %s root %s is %s, not %s" % (name, fs_roots[name], got, want))
        bench.setup()
        short = check_space(bench, fs_roots, args.fs, args.reps + 1)
        if short is not None:
            log("error: " + short)
            return 2
        groups = []
        settled = {}
        for b in args.bundles:
            for name in args.fs:
                if name == "ext4":
                    os.makedirs(fs_roots[name], exist_ok=True)
                    settle = wait_settled(fs_roots[name], log, args.ext4_dir)
                    settled.setdefault(name, []).append(settle)
                t0 = time.monotonic()
                groups.append(bench.run_group(b, name, fs_roots[name]))
                log("group %s/%s done in %.0f s" % (b, name, time.monotonic() - t0))
        prof = {}
        if not args.no_profile:
            t0 = time.monotonic()
            prof = bench.profile(os.path.join(fs_roots["tmpfs"], "profile"))
            log("profile done in %.0f s" % (time.monotonic() - t0))
        servers.stop_all()
        cleanup = {}
        if not args.keep:
            for name in ("tmpfs", "ext4"):
                if os.path.exists(fs_roots[name]):
                    cleanup[name] = delete_run(fs_roots[name], args.ext4_dir)
                    log("deleted %s: %.0f s" % (fs_roots[name], cleanup[name]))
        results = {
            "machine": info,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t_wall)),
            "duration_s": time.monotonic() - t_start,
            "command": args.command or "bench/run.py " + " ".join(sys.argv[1:]),
            "settled": settled,
            "config": {"reps": args.reps, "warm_runs": args.warm_runs, "bundles": args.bundles,
                       "fs": args.fs, "quick": args.quick, "pause_s": args.pause},
            "coldboot": {"path": bench.cb, "version": subprocess.run(
                [bench.cb, "--version"], capture_output=True, text=True).stdout.strip(),
                         "git": git_head(), "build": build_flags(bench.cb)},
            "servers": {"http": bench.http_kind, "s3": bench.s3_kind},
            "s3": {"coldboot": bench.cb_s3_ok, "coldboot_reason": bench.cb_s3_reason,
                   "curl_sigv4": bench.s3_curl_ok},
            "bundles": bench.meta,
            "groups": groups,
            "profile": prof,
            "cleanup_s": cleanup,
        }
        with open(results_path, "w") as f:
            json.dump(results, f, indent=1)
        log("results: %s" % results_path)
        targets = report.write(results, args.docs)
        for t in targets:
            print("%-4s %s" % (t["verdict"], t["text"]))
        log("total %.0f s" % (time.monotonic() - t_start))
        return 0
    finally:
        servers.stop_all()
        if not args.keep:
            for d in cleanup_dirs:
                if os.path.exists(d):
                    log("deleting %s" % d)
                    delete_run(d, args.ext4_dir)


# Contenders that leave no tree behind, and those that also leave the downloaded zip.
NO_TREE = ("curl_only", "curl_paced", "s3_only")
ZIP_TOO = ("curl_unzip", "aws_unzip", "curl_pyzip")


def space_needed(meta, keys, rounds, kept):
    """Bytes one bundle's runs hold at once: every round's when kept (ext4), one round's if not.

    A tree is counted at its unpacked size plus half a 4 KiB block per file and a block per
    directory, and 15 % more (nodemods on ext4: 269 MB counted, 268.6 MB measured); the warm
    install and the three untimed extra runs come on top.
    """
    tree = 1.15 * (meta["unpacked_bytes"] + 2048 * meta["files"] + 4096 * meta["dirs"])
    per_round = sum(tree for k in keys if k not in NO_TREE) + \
        sum(meta["zip_bytes"] for k in keys if k in ZIP_TOO)
    return (rounds if kept else 1) * per_round + 4 * tree + meta["zip_bytes"]


def check_space(bench, fs_roots, fs_names, rounds):
    """None, or a one-line reason the run cannot fit where it writes."""
    keys = [k for k, _, _ in bench.contenders()]
    for name in fs_names:
        kept = name != "tmpfs"  # ext4 runs stay until the end: a deletion stalls the next run
        need = [space_needed(bench.meta[b], keys, rounds, kept) for b in bench.args.bundles]
        need = sum(need) if kept else max(need)
        v = os.statvfs(fs_roots[name])
        free = v.f_bavail * v.f_frsize
        if need > free:
            return ("the %s runs need about %.1f GB under %s and only %.1f GB is free: free some, "
                    "or run fewer --bundles%s" % (name, need / 1e9, os.path.dirname(fs_roots[name]),
                                                  free / 1e9, ", fewer --reps or --fs tmpfs"
                                                  if kept else ""))
    return None


def delete_run(root, ext4_dir):
    """remove_tree, and under ext4_dir the stamp the next benchmark waits on. Returns seconds."""
    took = remove_tree(root)
    if os.path.commonpath([os.path.abspath(root), os.path.abspath(ext4_dir)]) == \
            os.path.abspath(ext4_dir):
        note_deleted(ext4_dir)
    return took


def remove_tree(root, jobs=4, timeout_s=3600):
    """Deletes root, its subdirectories by several rm processes at once (bounded in time).

    On an ext4 mounted with `discard` every freed extent waits for a discard, so deleting
    many small files is slow; parallel rm overlaps those waits somewhat.
    """
    t0 = time.monotonic()
    subdirs = []
    for top in sorted(os.listdir(root)):
        p = os.path.join(root, top)
        if os.path.isdir(p) and not os.path.islink(p):
            subdirs += [os.path.join(p, n) for n in sorted(os.listdir(p))]
    if subdirs:
        subprocess.run(["xargs", "-0", "-P", str(jobs), "-n", "1", "rm", "-rf", "--one-file-system"],
                       input="\0".join(subdirs).encode(), timeout=timeout_s)
    subprocess.run(["rm", "-rf", "--one-file-system", root], timeout=timeout_s)
    return time.monotonic() - t0


def build_flags(coldboot):
    """CMAKE_BUILD_TYPE and its C flags from the CMakeCache.txt beside the binary."""
    cache = os.path.join(os.path.dirname(os.path.abspath(coldboot)), "CMakeCache.txt")
    vals = {}
    try:
        with open(cache) as f:
            for ln in f:
                m = re.match(r"^(CMAKE_BUILD_TYPE|CMAKE_C_FLAGS(?:_[A-Z]+)?):[A-Z]+=(.*)$", ln)
                if m:
                    vals[m.group(1)] = m.group(2).strip()
    except OSError:
        return "unknown build flags"
    bt = vals.get("CMAKE_BUILD_TYPE", "")
    flags = " ".join(x for x in (vals.get("CMAKE_C_FLAGS", ""),
                                 vals.get("CMAKE_C_FLAGS_" + bt.upper(), "")) if x)
    return "CMAKE_BUILD_TYPE=%s (%s)" % (bt or "none", flags or "no extra flags")


def git_head():
    r = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"], capture_output=True,
                       text=True)
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "bootstrap", "cache"],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + (" + uncommitted work in bootstrap/ or cache/" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
