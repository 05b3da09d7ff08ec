"""Shared helpers for coldboot's end-to-end tests.

A test file imports this module, defines functions named test_*, and ends with

    if __name__ == "__main__":
        sys.exit(cbtest.main(globals()))

ctest runs it as `python3 tests/e2e/test_x.py --coldboot PATH` with CB_TEST_TMP
(a scratch folder) and CB_REPO (the source tree) in the environment. Each test
prints `ok NAME`, `skip NAME: REASON` or `FAIL NAME: REASON`; the run ends with
the line `N passed, M failed` and a non-zero exit status when anything failed.

Everything here is bounded: processes run with a timeout, servers exit by
themselves after a while, and every wait has a deadline.
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile

MARKER_NAME = ".coldboot.json"
DEFAULT_TIMEOUT_S = 60.0

# Filled by main() before the tests run.
COLDBOOT = None
REPO = os.environ.get("CB_REPO") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_TMP_ROOT = None
_KEEP = False


class Failure(AssertionError):
    """A test's expectation did not hold."""


class Skip(Exception):
    """The test cannot run here (a tool is missing); it is reported, not counted."""


# ---- assertions ----


def check(cond, message):
    """Fails the current test with message unless cond holds."""
    if not cond:
        raise Failure(message)


def check_equal(actual, expected, what):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, expected, actual))


def describe(proc):
    """A short account of a finished process, for failure messages."""
    out = proc.stdout if isinstance(proc.stdout, str) else ""
    err = proc.stderr if isinstance(proc.stderr, str) else ""
    return "exit %s; stdout %r; stderr %r" % (proc.returncode, out[-800:], err[-800:])


def check_exit(proc, expected, what="coldboot"):
    if proc.returncode != expected:
        raise Failure("%s: expected exit %d, got %s" % (what, expected, describe(proc)))


# ---- scratch folders ----


def tmp_root():
    """This run's own folder under $CB_TEST_TMP (shared with other tests running in parallel)."""
    global _TMP_ROOT
    if _TMP_ROOT is None:
        base = os.environ.get("CB_TEST_TMP") or os.path.join(tempfile.gettempdir(), "cbtest")
        os.makedirs(base, exist_ok=True)
        script = os.path.splitext(os.path.basename(sys.argv[0]))[0] or "e2e"
        _TMP_ROOT = tempfile.mkdtemp(prefix=script + "-", dir=base)
    return _TMP_ROOT


def remove_tree(path):
    """Removes path even where read-only folders are inside it."""
    def make_writable_and_retry(func, failed_path, _exc_info):
        try:
            os.chmod(os.path.dirname(failed_path), 0o700)
            os.chmod(failed_path, 0o700)
        except OSError:
            pass
        func(failed_path)

    if os.path.lexists(path):
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=make_writable_and_retry)
        else:
            shutil.rmtree(path, onerror=make_writable_and_retry)


def fresh_dir(prefix="t"):
    """A new empty folder (mode 0700) under $CB_TEST_TMP, created now."""
    return tempfile.mkdtemp(prefix=prefix + "-", dir=tmp_root())


# ---- trees and zips ----


def write_file(path, data, mode=0o644):
    """Writes data (str or bytes) to path, creating parent folders, and sets mode."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def symlink(target, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def make_layer_tree(root):
    """A layer-style source tree with executables, symlinks, an empty folder and odd names."""
    write_file(os.path.join(root, "bin", "tool"), "#!/bin/sh\necho tool ran\n", 0o755)
    symlink("tool", os.path.join(root, "bin", "tool-link"))
    write_file(os.path.join(root, "lib", "libdemo.so.1"), b"\x7fELF not really\x00" * 64, 0o644)
    symlink("libdemo.so.1", os.path.join(root, "lib", "libdemo.so"))
    write_file(os.path.join(root, "python", "cbpkg", "__init__.py"), "VALUE = 42\n")
    write_file(os.path.join(root, "nodejs", "node_modules", "cbpkg", "index.js"), "exports.v = 42;\n")
    write_file(os.path.join(root, "share", "doc", "with space.txt"), "a name with a space\n")
    write_file(os.path.join(root, "share", "empty-file"), b"")
    write_file(os.path.join(root, "share", "big.bin"), os.urandom(300 * 1024))
    write_file(os.path.join(root, "share", "readonly.txt"), "read only\n", 0o444)
    symlink("../lib", os.path.join(root, "share", "lib-dir-link"))
    os.makedirs(os.path.join(root, "var", "empty-dir"))
    return root


def zip_with_infozip(src_dir, out_zip):
    """Zips src_dir's contents with Info-ZIP `zip -r -y` (symlinks stored as links, modes kept)."""
    if shutil.which("zip") is None:
        raise Skip("Info-ZIP zip is not installed (bash scripts/deps.sh installs it)")
    out_zip = os.path.abspath(out_zip)
    if os.path.exists(out_zip):
        os.unlink(out_zip)
    entries = sorted(os.listdir(src_dir))
    proc = subprocess.run(["zip", "-q", "-r", "-y", out_zip] + entries, cwd=src_dir,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=DEFAULT_TIMEOUT_S)
    if proc.returncode != 0:
        raise Failure("zip failed: %s" % describe(proc))
    return out_zip


def zip_with_python(src_dir, out_zip, dir_entries="all", compression=zipfile.ZIP_DEFLATED,
                    stored_suffixes=(".bin",)):
    """Zips src_dir's contents with Python's zipfile, recording Unix modes and symlinks.

    dir_entries: "all" writes an entry for every folder; "empty" only for empty
    folders (the others are implied by their files' names, as many tools do).
    Files whose names end with one of stored_suffixes are stored uncompressed.
    """
    out_zip = os.path.abspath(out_zip)
    with zipfile.ZipFile(out_zip, "w", compression=compression) as zf:
        for dirpath, dirnames, filenames in os.walk(src_dir):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, src_dir)
            if rel_dir != ".":
                st = os.lstat(dirpath)
                if dir_entries == "all" or (not dirnames and not filenames):
                    info = zipfile.ZipInfo(rel_dir.replace(os.sep, "/") + "/",
                                           date_time=time.localtime(st.st_mtime)[:6])
                    info.create_system = 3
                    info.external_attr = ((stat.S_IFDIR | stat.S_IMODE(st.st_mode)) << 16) | 0x10
                    zf.writestr(info, b"")
            # os.walk lists symlinks to folders among dirnames; they are entries, not folders to enter.
            names = sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))])
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for name in names:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, src_dir).replace(os.sep, "/")
                st = os.lstat(full)
                info = zipfile.ZipInfo(rel, date_time=time.localtime(max(st.st_mtime, 315532800))[:6])
                info.create_system = 3
                if stat.S_ISLNK(st.st_mode):
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    info.compress_type = zipfile.ZIP_STORED
                    zf.writestr(info, os.readlink(full).encode())
                    continue
                info.external_attr = (stat.S_IFREG | stat.S_IMODE(st.st_mode)) << 16
                info.compress_type = compression
                if name.endswith(tuple(stored_suffixes)):
                    info.compress_type = zipfile.ZIP_STORED
                with open(full, "rb") as f:
                    zf.writestr(info, f.read())
    return out_zip


def _node_kind(st):
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "other"


def tree_listing(root, ignore_top=(MARKER_NAME,)):
    """{relative path: (kind, detail)} for every node under root, without following symlinks.

    detail is (owner exec bit, content bytes) for files, the link target for
    symlinks, and None for folders. Names in ignore_top are skipped at the top level.
    """
    nodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            if rel_dir == "." and name in ignore_top:
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            kind = _node_kind(st)
            if kind == "file":
                with open(full, "rb") as f:
                    detail = (bool(st.st_mode & stat.S_IXUSR), f.read())
            elif kind == "symlink":
                detail = os.readlink(full)
            else:
                detail = None
            nodes[rel] = (kind, detail)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return nodes


def compare_trees(expected_root, actual_root):
    """Differences between two trees as a list of sentences (empty when they are equal).

    Compares the set of names, each node's kind, file contents, the owner's
    exec bit and symlink targets; ignores the marker .coldboot.json at the top.
    """
    a = tree_listing(expected_root)
    b = tree_listing(actual_root)
    problems = []
    for rel in sorted(set(a) - set(b)):
        problems.append("missing %s" % rel)
    for rel in sorted(set(b) - set(a)):
        problems.append("unexpected %s" % rel)
    for rel in sorted(set(a) & set(b)):
        (ka, da), (kb, db) = a[rel], b[rel]
        if ka != kb:
            problems.append("%s is a %s, expected a %s" % (rel, kb, ka))
        elif ka == "file":
            if da[1] != db[1]:
                problems.append("%s: content differs (%d vs %d bytes)" % (rel, len(db[1]), len(da[1])))
            if da[0] != db[0]:
                problems.append("%s: exec bit is %s, expected %s" % (rel, db[0], da[0]))
        elif ka == "symlink" and da != db:
            problems.append("%s: symlink to %r, expected %r" % (rel, db, da))
    return problems


def check_same_tree(expected_root, actual_root):
    problems = compare_trees(expected_root, actual_root)
    check(not problems, "trees differ: " + "; ".join(problems[:12]))


def check_nothing_published(cache):
    """A failed install left no bundle under cache/bundles/ and no current link."""
    bundles = os.path.join(cache, "bundles")
    left = os.listdir(bundles) if os.path.isdir(bundles) else []
    check(left == [], "a failed install left %s under bundles/" % left)
    check(not os.path.lexists(os.path.join(cache, "current")), "a failed install left current")


def check_one_error(proc, *phrases):
    """proc's stderr has exactly one line with "error" in it, and it holds every phrase."""
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    check(len(errors) == 1, "expected one error line, got %r" % errors)
    for phrase in phrases:
        check(phrase in errors[0], "error line %r lacks %r" % (errors[0], phrase))


# ---- running coldboot and other processes ----


def base_env(extra=None, drop=()):
    """The environment for a child: ours without any COLDBOOT_*, plus extra, minus drop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDBOOT_")}
    for k in drop:
        env.pop(k, None)
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


def without_leak_check(env):
    """env with LeakSanitizer off: it cannot work under ptrace and aborts the traced process.

    AddressSanitizer and UBSan stay on; the same runs without a tracer keep the leak check.
    """
    env = dict(env)
    options = [o for o in env.get("ASAN_OPTIONS", "").split(":") if o and not o.startswith("detect_leaks=")]
    env["ASAN_OPTIONS"] = ":".join(options + ["detect_leaks=0"])
    return env


def run(argv, env=None, timeout=DEFAULT_TIMEOUT_S, cwd=None, input_text=None):
    """Runs argv to completion (killing it after timeout seconds) and returns the CompletedProcess.

    stdout and stderr are captured as text (undecodable bytes replaced).
    A timeout is a test failure, not a hang. Under strace (argv[0]), the
    sanitizer build's leak check is turned off: see without_leak_check.
    """
    env = env if env is not None else base_env()
    if os.path.basename(str(argv[0])) == "strace":
        env = without_leak_check(env)
    try:
        return subprocess.run(argv, env=env, cwd=cwd,
                              input=input_text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, encoding="utf-8", errors="replace",
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise Failure("%s did not finish within %.0f s (stderr %r)"
                      % (" ".join(argv[:4]), timeout, (exc.stderr or b"")[-400:]))


def coldboot(*args, env=None, timeout=DEFAULT_TIMEOUT_S, cwd=None):
    """Runs the coldboot binary under test with args."""
    return run([COLDBOOT] + [str(a) for a in args], env=env, timeout=timeout, cwd=cwd)


HASH_RE = re.compile(r"\b(xxh3|xxh64):([0-9a-fA-F]+)\b")


def coldboot_hash(path):
    """The checksum `coldboot hash` prints for path, as "xxh3:<32 hex>"."""
    proc = coldboot("hash", path)
    check_exit(proc, 0, "coldboot hash %s" % path)
    m = HASH_RE.search(proc.stdout)
    check(m is not None and m.group(1) == "xxh3" and len(m.group(2)) == 32,
          "coldboot hash printed no xxh3:<32 hex>: %s" % describe(proc))
    return "xxh3:" + m.group(2).lower()


def digest_of(checksum):
    """The hex part of "xxh3:<hex>", which names the bundle's folder."""
    return checksum.split(":", 1)[1].lower()


def read_marker(bundle_dir):
    path = os.path.join(bundle_dir, MARKER_NAME)
    check(os.path.isfile(path), "no marker at %s" % path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Failure("marker %s is not JSON (%s): %r" % (path, exc, text[:400]))


def strace_available():
    if shutil.which("strace") is None:
        return False
    try:
        proc = subprocess.run(["strace", "-f", "-o", os.devnull, "true"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def stop_process(proc, timeout_s=10.0):
    """Stops a server started with Popen: SIGTERM, then SIGKILL after timeout_s; closes its pipes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


# ---- the loopback static HTTP server ----


class StaticServer:
    """tests/servers/static_server.py in its own process, serving root on 127.0.0.1.

    Use as a context manager, or call start() and stop(). requests() returns the
    request log as a list of (method, path, status) tuples.
    """

    def __init__(self, root, max_seconds=300.0, bytes_per_second=0):
        self.root = os.path.abspath(root)
        self.max_seconds = max_seconds
        self.bytes_per_second = bytes_per_second
        self.log_path = os.path.join(fresh_dir("srvlog"), "requests.log")
        self.proc = None
        self.port = None

    def start(self, timeout_s=20.0):
        script = os.path.join(REPO, "tests", "servers", "static_server.py")
        open(self.log_path, "a").close()
        argv = [sys.executable, script, "--root", self.root, "--log", self.log_path,
                "--max-seconds", str(self.max_seconds)]
        if self.bytes_per_second:
            argv += ["--bytes-per-second", str(self.bytes_per_second)]
        self.proc = subprocess.Popen(argv,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise Failure("static server did not print its port within %.0f s" % timeout_s)
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 64)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    self.stop()
                    raise Failure("static server exited before printing its port: %s" % err[-400:])
                line += chunk
        self.port = int(line.strip())
        return self

    def url(self, name):
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def requests(self):
        """Every request so far as (method, path, status) tuples, in order."""
        with open(self.log_path, encoding="utf-8") as f:
            rows = [line.split() for line in f if line.strip()]
        return [(r[0], r[1], int(r[2])) for r in rows]

    def stop(self, timeout_s=10.0):
        if self.proc is None:
            return
        stop_process(self.proc, timeout_s)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# ---- the runner ----


def _tests_in(module_globals):
    tests = [(name, fn) for name, fn in module_globals.items()
             if name.startswith("test_") and callable(fn) and hasattr(fn, "__code__")]
    tests.sort(key=lambda item: item[1].__code__.co_firstlineno)
    return tests


def main(module_globals, argv=None):
    """Parses --coldboot, runs every test_* function of the calling module, reports, returns the exit status."""
    global COLDBOOT, _KEEP
    parser = argparse.ArgumentParser()
    parser.add_argument("--coldboot", required=True, help="the coldboot binary under test")
    parser.add_argument("-k", dest="pattern", help="run only the tests whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep scratch folders of passing tests")
    args = parser.parse_args(argv)
    COLDBOOT = os.path.abspath(args.coldboot)
    _KEEP = args.keep
    if not os.access(COLDBOOT, os.X_OK):
        print("FAIL setup: %s is not an executable" % COLDBOOT)
        print("0 passed, 1 failed")
        return 1

    passed = failed = skipped = 0
    for name, fn in _tests_in(module_globals):
        if args.pattern and args.pattern not in name:
            continue
        started = time.monotonic()
        try:
            fn()
        except Skip as exc:
            skipped += 1
            print("skip %s: %s" % (name, exc), flush=True)
            continue
        except Failure as exc:
            failed += 1
            print("FAIL %s: %s" % (name, exc), flush=True)
            continue
        except Exception as exc:  # a bug in the test or an unexpected error: report it, go on
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(exc).__name__, exc), flush=True)
            traceback.print_exc(file=sys.stdout)
            continue
        passed += 1
        print("ok %s (%.2f s)" % (name, time.monotonic() - started), flush=True)
    if skipped:
        print("%d skipped" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    if _TMP_ROOT is not None and failed:
        print("scratch folders kept in %s" % _TMP_ROOT)
    if failed == 0 and not _KEEP and _TMP_ROOT is not None:
        # Scratch folders of a fully passing run are not needed; a failing run keeps them to look at.
        remove_tree(_TMP_ROOT)
    return 1 if failed else 0
