"""The core contract, end to end: download, verify, unpack, publish, then exec the handler.

Zips are made by Info-ZIP `zip` and by Python's zipfile, served by a real
HTTP server on 127.0.0.1, and installed by the coldboot binary under test.
"""
import datetime
import json
import os
import shutil
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import check, check_equal, check_exit  # noqa: E402

NET_LIBS = ("libcurl", "libzip", "libssl", "libcrypto", "coldboot-cold")

HANDLER_TEMPLATE = """#!%(python)s
# Reports what coldboot handed over: the arguments and the environment, as JSON on stdout.
import json
import os
import sys

KEYS = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "NODE_PATH", "COLDBOOT_BUNDLE")
with open(os.environ["CB_HANDLER_RAN"], "a") as f:
    f.write("ran\\n")
json.dump({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in KEYS}}, sys.stdout)
sys.exit(int(os.environ.get("CB_EXIT", "0")))
"""


class Setup:
    """One scratch folder: a source tree, its zip under www/, a handler, and a cache root."""

    def __init__(self, zipper="infozip", tree=cbtest.make_layer_tree, **zip_options):
        self.work = cbtest.fresh_dir("core")
        self.src = tree(os.path.join(self.work, "src"))
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        target = os.path.join(self.www, "b.zip")
        if zipper == "infozip":
            self.zip = cbtest.zip_with_infozip(self.src, target)
        else:
            self.zip = cbtest.zip_with_python(self.src, target, **zip_options)
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.digest = cbtest.digest_of(self.checksum)
        self.cache = os.path.join(self.work, "cache")
        self.bundle = os.path.join(self.cache, "bundles", self.digest)
        self.ran_file = os.path.join(self.work, "handler-ran")
        self.handler = os.path.join(self.work, "handler")
        cbtest.write_file(self.handler, HANDLER_TEMPLATE % {"python": sys.executable}, 0o755)

    def env(self, **extra):
        values = {"CB_HANDLER_RAN": self.ran_file}
        values.update(extra)
        return cbtest.base_env(values)

    def handler_runs(self):
        if not os.path.exists(self.ran_file):
            return 0
        with open(self.ran_file) as f:
            return len(f.read().splitlines())

    def run(self, url, *handler_args, env=None, exit_code=0):
        """coldboot --url URL --checksum SUM --dir CACHE -- HANDLER ARGS; returns the handler's report."""
        proc = cbtest.coldboot("--url", url, "--checksum", self.checksum, "--dir", self.cache, "--",
                               self.handler, *handler_args, env=env or self.env())
        check_exit(proc, exit_code)
        return handler_report(proc)

    def check_nothing_published(self):
        cbtest.check_nothing_published(self.cache)
        check_equal(self.handler_runs(), 0, "handler runs after a failed install")


def handler_report(proc):
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise cbtest.Failure("the handler's stdout is not its JSON report alone: %s" % cbtest.describe(proc))


def same_path(a, b):
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def parse_installed_at(value):
    """Wall-clock seconds from the marker's installed_at: RFC 3339 text or epoch milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1000.0
    check(isinstance(value, str), "installed_at is neither text nor a number: %r" % (value,))
    text = value.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise cbtest.Failure("installed_at %r is not RFC 3339" % value)


def check_published(s, url, started, finished):
    """The published tree equals the source; current points at it; the marker says what it should."""
    check(os.path.isdir(s.bundle), "no bundle directory %s" % s.bundle)
    cbtest.check_same_tree(s.src, s.bundle)
    current = os.path.join(s.cache, "current")
    check(os.path.islink(current), "%s is not a symlink" % current)
    check(same_path(current, s.bundle), "current -> %s, expected %s" % (os.readlink(current), s.bundle))

    marker = cbtest.read_marker(s.bundle)
    for key in ("url", "checksum", "bytes", "files", "installed_at"):
        check(key in marker, "the marker has no %r: %r" % (key, marker))
    check_equal(marker["url"], url, "marker url")
    check_equal(str(marker["checksum"]).lower(), s.checksum, "marker checksum")
    check_equal(marker["bytes"], os.path.getsize(s.zip), "marker bytes")
    listing = cbtest.tree_listing(s.src)
    leaves = sum(1 for kind, _ in listing.values() if kind != "dir")
    check(isinstance(marker["files"], int) and leaves <= marker["files"] <= len(listing) + 1,
          "marker files %r: expected between %d (files and links) and %d (all entries)"
          % (marker["files"], leaves, len(listing) + 1))
    at = parse_installed_at(marker["installed_at"])
    check(started - 5 <= at <= finished + 5,
          "installed_at %r is outside this install (%.0f..%.0f)" % (marker["installed_at"], started, finished))

    staging = os.path.join(s.cache, "staging")
    left = os.listdir(staging) if os.path.isdir(staging) else []
    check(left == [], "staging/ still holds %s after a successful install" % left)


def cold_then_warm(s):
    """Cold start over HTTP, a warm start with no request, then one with no server and no zip."""
    with cbtest.StaticServer(s.www) as srv:
        url = srv.url("b.zip")
        started = time.time()
        report = s.run(url, "first")
        finished = time.time()
        check_equal(report["argv"], ["first"], "handler argv on the cold start")
        check_published(s, url, started, finished)
        gets = [r for r in srv.requests() if r[1] == "/b.zip" and r[0] == "GET"]
        check(gets, "the cold start made no GET /b.zip: %s" % srv.requests())
        seen = len(srv.requests())

        report = s.run(url, "second")
        check_equal(report["argv"], ["second"], "handler argv on the warm start")
        check_equal(srv.requests()[seen:], [], "requests made by the warm start")

    # No server, no zip: a warm start must not need either.
    os.unlink(s.zip)
    report = s.run(url, "third")
    check_equal(report["argv"], ["third"], "handler argv with the server gone")
    check(same_path(report["env"]["COLDBOOT_BUNDLE"], s.bundle),
          "COLDBOOT_BUNDLE=%r, expected %s" % (report["env"]["COLDBOOT_BUNDLE"], s.bundle))
    check_equal(s.handler_runs(), 3, "handler runs")
    cbtest.check_same_tree(s.src, s.bundle)


def test_infozip_zip_cold_then_warm():
    cold_then_warm(Setup("infozip"))


def test_python_zipfile_cold_then_warm():
    # Only empty folders get their own entry: the others are implied by their files' names.
    cold_then_warm(Setup("python", dir_entries="empty"))


def test_python_zipfile_with_folder_entries():
    cold_then_warm(Setup("python", dir_entries="all"))


def test_arguments_and_exit_status_pass_through():
    s = Setup()
    args = ["plain", "with space", "-v", "--", "--url", "", "  two  spaces ", "ünï €", "*", "$HOME"]
    with cbtest.StaticServer(s.www) as srv:
        url = srv.url("b.zip")
        report = s.run(url, *args, env=s.env(CB_EXIT="3"), exit_code=3)
        check_equal(report["argv"], args, "handler argv on the cold start")
        for status in (0, 3, 42):
            report = s.run(url, *args, env=s.env(CB_EXIT=str(status)), exit_code=status)
            check_equal(report["argv"], args, "handler argv (exit %d)" % status)
        report = s.run(url, env=s.env(CB_EXIT="0"))
        check_equal(report["argv"], [], "handler argv with no arguments")


def check_prefixed(value, folder, original, name):
    """value must be folder, then ':' and original when there was one; no empty element."""
    check(value is not None, "%s is not set" % name)
    parts = value.split(":")
    check("" not in parts, "%s=%r has an empty element (it would mean the working folder)" % (name, value))
    check(same_path(parts[0], folder), "%s=%r does not start with %s" % (name, value, folder))
    rest = ":".join(parts[1:]) if len(parts) > 1 else None
    check_equal(rest, original, "%s after the bundle's folder" % name)


def test_handler_environment_from_existing_folders():
    s = Setup()
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LD_LIBRARY_PATH": "/orig/lib",
            "PYTHONPATH": None, "NODE_PATH": "/orig/node"}
    with cbtest.StaticServer(s.www) as srv:
        for start in ("cold", "warm"):
            report = s.run(srv.url("b.zip"), env=s.env(**base))
            env = report["env"]
            check_prefixed(env["PATH"], os.path.join(s.bundle, "bin"), base["PATH"], start + " PATH")
            check_prefixed(env["LD_LIBRARY_PATH"], os.path.join(s.bundle, "lib"), "/orig/lib",
                           start + " LD_LIBRARY_PATH")
            check_prefixed(env["PYTHONPATH"], os.path.join(s.bundle, "python"), None, start + " PYTHONPATH")
            check_prefixed(env["NODE_PATH"], os.path.join(s.bundle, "nodejs", "node_modules"), "/orig/node",
                           start + " NODE_PATH")
            check(same_path(env["COLDBOOT_BUNDLE"], s.bundle),
                  "%s COLDBOOT_BUNDLE=%r, expected %s" % (start, env["COLDBOOT_BUNDLE"], s.bundle))


def bin_and_python_only(root):
    cbtest.write_file(os.path.join(root, "bin", "tool"), "#!/bin/sh\necho tool ran\n", 0o755)
    cbtest.write_file(os.path.join(root, "python", "m.py"), "X = 1\n")
    return root


def test_handler_environment_skips_missing_folders():
    s = Setup(tree=bin_and_python_only)
    base = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/orig/lib", "PYTHONPATH": "/orig/py",
            "NODE_PATH": None}
    with cbtest.StaticServer(s.www) as srv:
        env = s.run(srv.url("b.zip"), env=s.env(**base))["env"]
    check_prefixed(env["PATH"], os.path.join(s.bundle, "bin"), base["PATH"], "PATH")
    check_prefixed(env["PYTHONPATH"], os.path.join(s.bundle, "python"), "/orig/py", "PYTHONPATH")
    check_equal(env["LD_LIBRARY_PATH"], "/orig/lib", "LD_LIBRARY_PATH (the bundle has no lib/)")
    check_equal(env["NODE_PATH"], None, "NODE_PATH (the bundle has no nodejs/node_modules/)")


def test_command_is_found_on_the_bundle_path():
    # PATH is prefixed before the command is looked up, so a bundle's bin/ can hold the handler.
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        proc = cbtest.coldboot("--url", srv.url("b.zip"), "--checksum", s.checksum, "--dir", s.cache,
                               "--", "tool-link", env=s.env(PATH="/usr/bin:/bin"))
    check_exit(proc, 0)
    check_equal(proc.stdout, "tool ran\n", "output of the bundle's bin/tool-link")


def test_ensure_prints_the_bundle_directory():
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        for start in ("cold", "warm"):
            seen = len(srv.requests())
            proc = cbtest.coldboot("ensure", "--url", srv.url("b.zip"), "--checksum", s.checksum,
                                   "--dir", s.cache, env=s.env())
            check_exit(proc, 0, "coldboot ensure (%s)" % start)
            lines = proc.stdout.splitlines()
            check(len(lines) == 1 and same_path(lines[0], s.bundle),
                  "%s ensure printed %r, expected the one line %s" % (start, proc.stdout, s.bundle))
        check_equal(srv.requests()[seen:], [], "requests made by the warm ensure")
    cbtest.check_same_tree(s.src, s.bundle)
    check_equal(s.handler_runs(), 0, "handler runs by ensure")


def test_wrong_checksum_exits_5_and_publishes_nothing():
    s = Setup()
    wrong = "xxh3:" + ("%032x" % (int(s.digest, 16) ^ 1))
    with cbtest.StaticServer(s.www) as srv:
        proc = cbtest.coldboot("--url", srv.url("b.zip"), "--checksum", wrong, "--dir", s.cache, "--",
                               s.handler, env=s.env())
        check_exit(proc, 5)
        check(proc.stderr.strip() != "", "no message on stderr for a checksum mismatch")
    s.check_nothing_published()
    wrong_bundle = os.path.join(s.cache, "bundles", cbtest.digest_of(wrong))
    check(not os.path.lexists(wrong_bundle), "%s exists" % wrong_bundle)


def test_http_404_exits_4_and_publishes_nothing():
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        proc = cbtest.coldboot("--url", srv.url("missing.zip"), "--checksum", s.checksum, "--dir", s.cache,
                               "--", s.handler, env=s.env())
        check_exit(proc, 4)
        check(any(r[1] == "/missing.zip" and r[2] == 404 for r in srv.requests()),
              "the server saw no request for /missing.zip: %s" % srv.requests())
        check(proc.stderr.strip() != "", "no message on stderr for a 404")
    s.check_nothing_published()


def test_status_before_and_after_a_start():
    s = Setup()
    proc = cbtest.coldboot("status", "--dir", s.cache, env=s.env())
    check_exit(proc, 0)
    check("does not exist" in proc.stdout, "status of a missing cache: %r" % proc.stdout)
    check(not os.path.lexists(s.cache), "status created %s" % s.cache)
    with cbtest.StaticServer(s.www) as srv:
        s.run(srv.url("b.zip"))
    proc = cbtest.coldboot("status", "--dir", s.cache, "--checksum", s.checksum, env=s.env())
    check_exit(proc, 0)
    lines = proc.stdout.splitlines()
    check(any(ln.startswith("container: ") and "1 starts, 1 downloads" in ln for ln in lines),
          "no container line with the counters: %r" % proc.stdout)
    check(any(ln.startswith("bundle %s: %s" % (s.digest, s.checksum)) and ln.endswith("[current]")
              for ln in lines), "the bundle is not listed as current: %r" % proc.stdout)
    check("configured bundle %s: published" % s.digest in proc.stdout,
          "the configured bundle is not reported published: %r" % proc.stdout)


def test_missing_checksum_exits_3_and_says_how_to_get_one():
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        proc = cbtest.coldboot("--url", srv.url("b.zip"), "--dir", s.cache, "--", s.handler, env=s.env())
        check_exit(proc, 3)
        check("coldboot hash" in proc.stderr, "the message does not mention `coldboot hash`: %r" % proc.stderr)
        check_equal(srv.requests(), [], "requests made without a checksum")
    s.check_nothing_published()


def test_unknown_option_exits_2():
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        proc = cbtest.coldboot("--no-such-option", "--url", srv.url("b.zip"), "--checksum", s.checksum,
                               "--dir", s.cache, "--", s.handler, env=s.env())
        check_exit(proc, 2)
        check(proc.stderr.strip() != "", "no message on stderr for an unknown option")
        proc = cbtest.coldboot("ensure", "--no-such-option", "--url", srv.url("b.zip"), "--checksum",
                               s.checksum, "--dir", s.cache, env=s.env())
        check_exit(proc, 2, "coldboot ensure --no-such-option")
        check_equal(srv.requests(), [], "requests made after a usage error")
    s.check_nothing_published()


def test_handler_not_found_127_not_executable_126():
    s = Setup()
    not_exec = os.path.join(s.work, "not-executable")
    cbtest.write_file(not_exec, "#!/bin/sh\necho should not run\n", 0o644)
    cases = [(os.path.join(s.work, "no-such-handler"), 127), ("cb-no-such-command-on-path", 127),
             (not_exec, 126), (s.work, 126)]
    with cbtest.StaticServer(s.www) as srv:
        s.run(srv.url("b.zip"))
        for command, status in cases:
            proc = cbtest.coldboot("--url", srv.url("b.zip"), "--checksum", s.checksum, "--dir", s.cache,
                                   "--", command, env=s.env())
            check_exit(proc, status, "coldboot -- %s" % command)
            check(proc.stderr.strip() != "", "no message on stderr for %s" % command)
            check("should not run" not in proc.stdout, "%s ran" % command)


def test_hash_matches_xxhsum():
    if shutil.which("xxhsum") is None:
        raise cbtest.Skip("xxhsum is not installed (bash scripts/deps.sh installs the xxhash package)")
    work = cbtest.fresh_dir("hash")
    files = []
    for name, data in (("empty", b""), ("small.txt", b"hello\n"), ("odd size.bin", os.urandom(1048579)),
                       ("block.bin", os.urandom(65536))):
        path = os.path.join(work, name)
        cbtest.write_file(path, data)
        files.append(path)
    files.append(cbtest.zip_with_infozip(os.path.join(cbtest.REPO, "examples", "bundle"),
                                         os.path.join(work, "example.zip")))
    proc = cbtest.coldboot("hash", *files)
    check_exit(proc, 0, "coldboot hash")
    lines = proc.stdout.splitlines()
    check_equal(len(lines), len(files), "lines printed by coldboot hash for %d files" % len(files))
    for path, line in zip(files, lines):
        ref = cbtest.run(["xxhsum", "-H2", path])
        check_exit(ref, 0, "xxhsum -H2")
        expected_hex = ref.stdout.split()[0].lower()
        m = cbtest.HASH_RE.search(line)
        check(m is not None, "no checksum in %r" % line)
        check_equal((m.group(1), m.group(2).lower()), ("xxh3", expected_hex), "checksum of %s" % path)
        check(path in line, "the line %r does not name %s" % (line, path))
        check_equal(cbtest.coldboot_hash(path), "xxh3:" + expected_hex, "coldboot hash of %s alone" % path)


def test_exec_wrapper_form_from_environment():
    s = Setup()
    args = ["arg", "-v", "--url", "http://127.0.0.1:1/other.zip", "--", "--checksum"]
    with cbtest.StaticServer(s.www) as srv:
        env = s.env(COLDBOOT_URL=srv.url("b.zip"), COLDBOOT_CHECKSUM=s.checksum, COLDBOOT_DIR=s.cache,
                    CB_EXIT="7")
        for start in ("cold", "warm"):
            seen = len(srv.requests())
            proc = cbtest.coldboot(s.handler, *args, env=env)
            check_exit(proc, 7, "coldboot HANDLER ARGS from the environment (%s)" % start)
            check_equal(handler_report(proc)["argv"], args, "handler argv (%s)" % start)
        check_equal(srv.requests()[seen:], [], "requests made by the warm start")
        check(all(r[1] == "/b.zip" for r in srv.requests()), "unexpected requests: %s" % srv.requests())
    cbtest.check_same_tree(s.src, s.bundle)


def test_flags_override_environment():
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        env = s.env(COLDBOOT_URL=srv.url("missing.zip"), COLDBOOT_CHECKSUM="xxh3:" + "0" * 32,
                    COLDBOOT_DIR=os.path.join(s.work, "other-cache"))
        report = s.run(srv.url("b.zip"), "x", env=env)
        check_equal(report["argv"], ["x"], "handler argv")
    cbtest.check_same_tree(s.src, s.bundle)
    check(not os.path.exists(os.path.join(s.work, "other-cache", "bundles", s.digest)),
          "COLDBOOT_DIR was used although --dir was given")


def opened_paths(trace_file):
    with open(trace_file, encoding="utf-8", errors="replace") as f:
        return [line for line in f if "openat(" in line]


def test_warm_start_loads_no_network_or_zip_library():
    if not cbtest.strace_available():
        raise cbtest.Skip("strace is missing or cannot trace here")
    s = Setup()
    with cbtest.StaticServer(s.www) as srv:
        argv = ["--url", srv.url("b.zip"), "--checksum", s.checksum, "--dir", s.cache, "--", "/bin/true"]
        traces = {}
        for start in ("cold", "warm"):
            trace = os.path.join(s.work, start + ".strace")
            proc = cbtest.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace, cbtest.COLDBOOT]
                              + argv, env=s.env())
            check_exit(proc, 0, "strace coldboot (%s start)" % start)
            traces[start] = opened_paths(trace)
    # The cold start must load libcurl: that shows the trace sees what the warm one must not.
    check(any("libcurl" in line for line in traces["cold"]),
          "the cold start's trace shows no libcurl, so the check below would prove nothing")
    loaded = [line.strip() for line in traces["warm"] if any(lib in line for lib in NET_LIBS)]
    check(loaded == [], "the warm start opened: %s" % loaded[:6])


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
