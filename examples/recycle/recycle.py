#!/usr/bin/env python3
"""Container recycling, simulated: N starts of a real handler wrapped by coldboot.

A serverless platform keeps a container (and its /tmp) for a while, then
recycles it: the next start lands in a fresh one and coldboot has to download
the bundle again. This script replays a schedule of such recycles on one
machine, with `--stats=FILE` on every start, and then runs `coldboot stats` on
the records, so you can see what the report says about a history you know.

    examples/recycle/recycle.py --coldboot build/coldboot
    examples/recycle/recycle.py --starts 200 --recycle-at 1,50,120 --svg chart.svg

The default schedule is the published experiment: 133 starts, recycled before
starts 1, 30, 61, 90 and 118, which coldboot must report as 133 starts,
5 containers, 5 downloads and 128 reuses.

How a container is simulated (--mode):
  unshare  every start runs in its own mount namespace (`unshare -m`, or
           `unshare -rm` when not root) where the container's own folder is
           bind-mounted on the cache path: the path is the same for every
           container, as /tmp is on the platform, the contents are not, and a
           recycle is simply a new folder.
  wipe     the cache folder is deleted at each recycle.
  auto     unshare when this machine permits it, else wipe (the default).

The bundle is the folder given with --bundle (default: examples/bundle), packed
with `coldboot pack` when the binary has it, else with Info-ZIP `zip` and
`coldboot hash`, and served as a file:// URL. --url and --checksum use an
existing bundle instead.

Exit status: that of `coldboot stats`, or 1 when a start failed.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHECKSUM_RE = re.compile(r"\b(xxh3:[0-9a-fA-F]{32}|xxh64:[0-9a-fA-F]{16})\b")
START_TIMEOUT_S = 120


def fail(message):
    print("recycle: " + message, file=sys.stderr)
    sys.exit(1)


def parse_schedule(text, starts):
    try:
        points = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        fail("--recycle-at wants start numbers separated by commas, got %r" % text)
    if any(p < 1 or p > starts for p in points):
        fail("--recycle-at: every start number must be between 1 and %d" % starts)
    # The first start always lands in a fresh container: the work folder is new.
    return sorted(set(points) | {1})


def run(argv, timeout=START_TIMEOUT_S, **kwargs):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, **kwargs)


def find_checksum(text, what):
    m = CHECKSUM_RE.search(text)
    if m is None:
        fail("%s printed no checksum: %r" % (what, text[-400:]))
    return m.group(1).lower()


def pack_bundle(coldboot, bundle_dir, work):
    """Packs bundle_dir into work/bundle.zip; returns (file:// URL, checksum)."""
    out_zip = os.path.join(work, "bundle.zip")
    usage = run([coldboot, "--help"])
    if re.search(r"coldboot pack\b", usage.stdout + usage.stderr):
        proc = run([coldboot, "pack", "-o", out_zip, bundle_dir])
        if proc.returncode != 0:
            fail("coldboot pack failed: " + proc.stderr.strip())
        checksum = find_checksum(proc.stdout, "coldboot pack")
    else:
        if shutil.which("zip") is None:
            fail("this coldboot has no `pack` and Info-ZIP zip is not installed")
        proc = run(["zip", "-q", "-r", "-X", out_zip, "."], cwd=bundle_dir)
        if proc.returncode != 0:
            fail("zip failed: " + proc.stderr.strip())
        proc = run([coldboot, "hash", out_zip])
        if proc.returncode != 0:
            fail("coldboot hash failed: " + proc.stderr.strip())
        checksum = find_checksum(proc.stdout, "coldboot hash")
    return "file://" + out_zip, checksum


def unshare_prefix():
    """The command prefix for a private mount namespace, or None when not permitted here."""
    if shutil.which("unshare") is None:
        return None
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    probe_dir = tempfile.mkdtemp(prefix="recycle-probe-")
    try:
        proc = run(["unshare"] + flags + ["--", "sh", "-c", 'mount --bind "$0" "$0"', probe_dir],
                   timeout=20)
        return ["unshare"] + flags if proc.returncode == 0 else None
    finally:
        os.rmdir(probe_dir)


class Containers:
    """Hands out the command that runs one start inside the current container."""

    def __init__(self, mode, work, prefix):
        self.mode = mode
        self.prefix = prefix
        self.cache = os.path.join(work, "cache")
        self.containers = os.path.join(work, "containers")
        self.count = 0
        os.makedirs(self.containers, exist_ok=True)

    def recycle(self):
        self.count += 1
        if self.mode == "wipe":
            shutil.rmtree(self.cache, ignore_errors=True)
            return
        # A new folder for the new container; the mount point itself stays empty.
        self.current = os.path.join(self.containers, "%03d" % self.count)
        os.mkdir(self.current, 0o700)
        os.makedirs(self.cache, mode=0o700, exist_ok=True)

    def wrap(self, argv):
        if self.mode == "wipe":
            return argv
        script = 'mount --bind "$0" "$1" && shift && exec "$@"'
        return self.prefix + ["--", "sh", "-c", script, self.current, self.cache] + argv


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Everything after -- is the handler and its arguments "
               "(default: examples/recycle/handler.sh).")
    parser.add_argument("--coldboot", default=os.environ.get("COLDBOOT") or shutil.which("coldboot"),
                        help="the coldboot binary (default: $COLDBOOT, else coldboot on PATH)")
    parser.add_argument("--starts", type=int, default=133, help="how many starts (default 133)")
    parser.add_argument("--recycle-at", default="1,30,61,90,118",
                        help="start numbers that land in a fresh container (default 1,30,61,90,118)")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds to sleep between starts (default 0)")
    parser.add_argument("--mode", choices=("auto", "unshare", "wipe"), default="auto")
    parser.add_argument("--bundle", default=os.path.join(REPO, "examples", "bundle"),
                        help="folder to pack as the bundle (default: examples/bundle)")
    parser.add_argument("--url", help="use this bundle URL instead of packing --bundle")
    parser.add_argument("--checksum", help="the checksum of --url")
    parser.add_argument("--work", help="work folder (default: a new one under the system temp dir)")
    parser.add_argument("--stats", help="stats file (default: WORK/stats.jsonl)")
    parser.add_argument("--json", action="store_true", help="ask coldboot stats for JSON")
    parser.add_argument("--svg", help="ask coldboot stats for a timeline chart")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each start's output")
    parser.add_argument("handler", nargs=argparse.REMAINDER)
    args = parser.parse_args()

    if not args.coldboot or not os.access(args.coldboot, os.X_OK):
        fail("no coldboot binary: pass --coldboot PATH or put coldboot on PATH")
    coldboot = os.path.abspath(args.coldboot)
    if args.starts < 1 or args.starts > 100000:
        fail("--starts must be between 1 and 100000")
    if (args.url is None) != (args.checksum is None):
        fail("--url and --checksum go together")
    schedule = parse_schedule(args.recycle_at, args.starts)
    handler = args.handler[1:] if args.handler[:1] == ["--"] else args.handler
    if not handler:
        handler = [os.path.join(HERE, "handler.sh")]

    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="coldboot-recycle-")
    os.makedirs(work, exist_ok=True)
    stats_file = os.path.abspath(args.stats or os.path.join(work, "stats.jsonl"))
    if os.path.exists(stats_file):
        os.unlink(stats_file)

    if args.url:
        url, checksum = args.url, args.checksum
    else:
        url, checksum = pack_bundle(coldboot, os.path.abspath(args.bundle), work)

    mode = args.mode
    prefix = None
    if mode in ("auto", "unshare"):
        prefix = unshare_prefix()
        if prefix is None and mode == "unshare":
            fail("unshare -m is not permitted here; use --mode wipe")
        mode = "unshare" if prefix is not None else "wipe"
    containers = Containers(mode, work, prefix)
    print("recycle: %d starts, recycles before %s, mode %s, work folder %s"
          % (args.starts, ",".join(str(p) for p in schedule), mode, work), file=sys.stderr)

    for n in range(1, args.starts + 1):
        if n in schedule:
            containers.recycle()
        argv = [coldboot, "--url", url, "--checksum", checksum, "--dir", containers.cache,
                "--stats=" + stats_file, "-q", "--"] + handler
        proc = run(containers.wrap(argv))
        if args.verbose:
            sys.stderr.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            fail("start %d failed with exit %d: %s" % (n, proc.returncode,
                                                       (proc.stderr or proc.stdout).strip()[-600:]))
        if args.interval > 0 and n < args.starts:
            time.sleep(args.interval)

    stats_argv = [coldboot, "stats"]
    if args.json:
        stats_argv.append("--json")
    if args.svg:
        stats_argv += ["--svg", os.path.abspath(args.svg)]
    stats_argv.append(stats_file)
    sys.stdout.flush()
    return subprocess.call(stats_argv, timeout=START_TIMEOUT_S)


if __name__ == "__main__":
    sys.exit(main())
