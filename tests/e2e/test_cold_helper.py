"""The static front binary and its cold helper program (coldboot-cold), end to end.

A warm start is one exec and, when the front is static, opens no library; a cold start
execs coldboot-cold exactly once, hands it the URL through a pipe (never argv), and turns
every way the helper can fail into a clear error and a clean cache.
"""
import os
import signal
import subprocess
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402
from cbtest import Failure, Skip, check, check_equal, check_exit  # noqa: E402

SECRET = "X-Amz-Signature=0123456789abcdefSECRET"


class Bundle:
    """A small tree, its zip under www/, a cache root and a place for fake helpers."""

    def __init__(self):
        self.work = cbtest.fresh_dir("cold")
        self.src = cbtest.make_layer_tree(os.path.join(self.work, "src"))
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        self.zip = cbtest.zip_with_infozip(self.src, os.path.join(self.www, "b.zip"))
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.digest = cbtest.digest_of(self.checksum)
        self.cache = os.path.join(self.work, "cache")
        self.url = "file://" + self.zip

    def argv(self, url=None, cache=None):
        return [cbtest.COLDBOOT, "ensure", "--url", url or self.url, "--checksum", self.checksum,
                "--dir", cache or self.cache]

    def fake_helper(self, name, body):
        """An executable script standing in for coldboot-cold."""
        path = os.path.join(self.work, name)
        cbtest.write_file(path, body, mode=0o755)
        return path

    def published(self):
        bundles = os.path.join(self.cache, "bundles")
        return sorted(os.listdir(bundles)) if os.path.isdir(bundles) else []

    def staging(self):
        staging = os.path.join(self.cache, "staging")
        return sorted(os.listdir(staging)) if os.path.isdir(staging) else []


def front_is_static():
    """True when the binary under test has no program interpreter (PT_INTERP)."""
    with open(cbtest.COLDBOOT, "rb") as f:
        head = f.read(64)
        check(head[:4] == b"\x7fELF" and head[4] == 2, "not a 64-bit ELF: %s" % cbtest.COLDBOOT)
        endian = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack_from(endian + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))


def traced(argv, trace, env):
    return cbtest.run(["strace", "-f", "-qq", "-s", "65536", "-e", "trace=openat,execve", "-o", trace]
                      + argv, env=env)


def lines_of(trace):
    with open(trace, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f]


def execs(lines):
    return [line for line in lines if "execve(" in line and "= -1" not in line]


def test_warm_start_is_one_exec_and_opens_no_library():
    if not cbtest.strace_available():
        raise Skip("strace is missing or cannot trace here")
    b = Bundle()
    env = cbtest.base_env()
    argv = [a for a in b.argv() if a != "ensure"] + ["--", "/bin/true"]  # the wrapper form
    traces = {}
    for start in ("cold", "warm"):
        trace = os.path.join(b.work, start + ".strace")
        check_exit(traced(argv, trace, env), 0, "%s start under strace" % start)
        traces[start] = lines_of(trace)

    cold = execs(traces["cold"])
    helpers = [line for line in cold if '/coldboot-cold", [' in line]
    check_equal(len(helpers), 1, "execs of coldboot-cold in a cold start (%s)" % cold)
    check_equal(len(cold), 3, "execs in a cold start (front, helper, handler): %s" % cold)

    warm = execs(traces["warm"])
    check_equal(len(warm), 2, "execs in a warm start (front, handler): %s" % warm)
    check('execve("/bin/true"' in warm[1], "the second exec is not the handler: %s" % warm[1])
    if front_is_static():
        front = traces["warm"][:traces["warm"].index(warm[1])]
        opened = [line for line in front if "openat(" in line]
        outside = [line for line in opened
                   if "AT_FDCWD" in line and ('"%s' % b.cache) not in line]
        check_equal(outside, [], "files a static warm start opened outside the cache")
        check(len(opened) >= 3, "the warm start's trace shows too few opens: %s" % opened)
    else:
        print("note: %s is dynamic (sanitizer build?); library check skipped" % cbtest.COLDBOOT)


def test_url_reaches_the_helper_by_pipe_not_argv():
    if not cbtest.strace_available():
        raise Skip("strace is missing or cannot trace here")
    b = Bundle()
    with cbtest.StaticServer(b.www) as srv:
        url = srv.url("b.zip") + "?" + SECRET
        trace = os.path.join(b.work, "execve.strace")
        check_exit(traced(b.argv(url=url), trace, cbtest.base_env()), 0, "cold start under strace")
        requests = srv.requests()
    helper = [line for line in execs(lines_of(trace)) if "/coldboot-cold" in line]
    check_equal(len(helper), 1, "helper execs")
    check("install" in helper[0], "the helper was not asked to install: %s" % helper[0])
    check(SECRET not in helper[0], "the URL's secret is in the helper's argv: %s" % helper[0])
    check_equal([r[1] for r in requests], ["/b.zip?" + SECRET], "what the helper requested")
    check_equal(b.published(), [b.digest], "published bundles")


def expect_failure(b, helper, code, words, what, env_extra=None, preexec_fn=None):
    env = cbtest.base_env({"COLDBOOT_COLD_EXE": helper})
    env.update(env_extra or {})
    proc = subprocess.run(b.argv(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, encoding="utf-8", errors="replace", timeout=60,
                          preexec_fn=preexec_fn)
    check_exit(proc, code, what)
    for word in words:
        check(word in proc.stderr, "%s: %r not in the message %r" % (what, word, proc.stderr))
    check_equal(b.published(), [], "%s: published bundles" % what)
    check_equal(b.staging(), [], "%s: staging leftovers" % what)
    return proc


def test_every_helper_failure_is_a_clear_error_and_leaves_nothing():
    b = Bundle()
    py = sys.executable
    cases = [
        ("missing", os.path.join(b.work, "no-such-helper"), 3,
         ["cannot find the download helper", "COLDBOOT_COLD_EXE"]),
        ("killed", b.fake_helper("killed", "#!/bin/sh\nkill -9 $$\n"), 3,
         ["died: signal 9"]),
        ("other build", b.fake_helper("other", "#!/bin/sh\necho 'unknown protocol' >&2\nexit 2\n"), 3,
         ["does not match this coldboot binary", "unknown protocol"]),
        ("silent", b.fake_helper("silent", "#!/bin/sh\nexit 0\n"), 3,
         ["exited (status 0) without a result"]),
        ("garbage", b.fake_helper("garbage", "#!%s\nimport os, sys\nos.write(int(sys.argv[2]), b'hello\\n')\n" % py),
         3, ["cannot read"]),
        ("not executable", b.fake_helper("noexec", "\x7fELF garbage"), 3,
         ["cannot run the download helper"]),
        # A failure record from the helper keeps its status: 7 is the space exit code.
        ("record", b.fake_helper(
            "record", "#!%s\nimport os, sys\nos.write(int(sys.argv[2]), b'coldboot-cold-3 8 28 7 0 0 0 0 0 0 0 -\\n"
            "no room for it here')\n" % py), 7, ["no room for it here"]),
    ]
    for what, helper, code, words in cases:
        expect_failure(b, helper, code, words, what)
    # After all that, the real helper installs the bundle.
    check_exit(cbtest.run(b.argv()), 0, "a start with the real helper")
    check_equal(b.published(), [b.digest], "published after the failures")


def test_signal_death_is_seen_when_sigchld_is_ignored():
    """An inherited SIGCHLD=SIG_IGN would let the kernel reap the helper before waitpid."""
    b = Bundle()
    helper = b.fake_helper("killed", "#!/bin/sh\nkill -9 $$\n")
    expect_failure(b, helper, 3, ["died: signal 9"], "helper killed, SIGCHLD ignored",
                   preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    env = cbtest.base_env()
    proc = subprocess.run(b.argv(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, encoding="utf-8", errors="replace", timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    check_exit(proc, 0, "real helper, SIGCHLD ignored")
    check_equal(b.published(), [b.digest], "published with SIGCHLD ignored")


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_helper_dies_with_a_killed_front():
    b = Bundle()
    pid_file = os.path.join(b.work, "helper.pid")
    helper = b.fake_helper("sleeper", '#!/bin/sh\necho $$ > "%s.tmp"\nmv "%s.tmp" "%s"\nexec sleep 60\n'
                           % (pid_file, pid_file, pid_file))
    env = cbtest.base_env({"COLDBOOT_COLD_EXE": helper})
    front = subprocess.Popen(b.argv(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(pid_file):
            check(time.monotonic() < deadline, "the fake helper did not start within 20 s")
            check(front.poll() is None, "the front exited early: %s" % front.returncode)
            time.sleep(0.02)
        with open(pid_file) as f:
            pid = int(f.read())
        check(not gone(pid), "the helper is not running")
    finally:
        front.kill()
        front.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not gone(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise Failure("the helper (pid %d) outlived the killed front by 10 s" % pid)
        time.sleep(0.02)
    # The next start takes the lock the dead front held, clears staging and installs.
    check_exit(cbtest.run(b.argv()), 0, "the start after the kill")
    check_equal(b.published(), [b.digest], "published after the kill")
    check_equal(b.staging(), [], "staging after the kill")


def test_helper_logs_at_the_front_level():
    b = Bundle()
    quiet = cbtest.run(b.argv(cache=os.path.join(b.work, "q")), env=cbtest.base_env({"COLDBOOT_LOG": "error"}))
    check_exit(quiet, 0, "cold start at level error")
    check_equal(quiet.stderr, "", "stderr at level error")
    loud = cbtest.run(b.argv(cache=os.path.join(b.work, "l")), env=cbtest.base_env({"COLDBOOT_LOG": "debug"}))
    check_exit(loud, 0, "cold start at level debug")
    check("coldboot: running " in loud.stderr and "coldboot-cold install" in loud.stderr,
          "the front's debug line is missing: %r" % loud.stderr)
    check("coldboot: downloaded " in loud.stderr, "the helper's info line is missing: %r" % loud.stderr)


def test_helper_refuses_to_run_by_hand():
    helper = os.path.join(os.path.dirname(cbtest.COLDBOOT), "coldboot-cold")
    check(os.access(helper, os.X_OK), "no coldboot-cold next to %s" % cbtest.COLDBOOT)
    for argv in ([helper], [helper, "install"], [helper, "coldboot-cold-3", "1", "install"],
                 [helper, "coldboot-cold-3", "99", "hash", "2", "0", "/etc/hostname"]):
        proc = cbtest.run(argv)
        check_exit(proc, 2, " ".join(argv[1:]) or "no arguments")
        check("download helper of coldboot" in proc.stderr, "usage text: %r" % proc.stderr)
        check_equal(proc.stdout, "", "stdout of %s" % argv)


def test_helper_alone_gets_the_heap_tunables():
    # bootstrap/helper_heap.h: the front sets GLIBC_TUNABLES for the helper when the memory
    # budget is 64 MiB or more and the variable is unset; never for the handler, never over
    # a value of the user's.
    b = Bundle()
    real = os.path.join(os.path.dirname(os.path.abspath(cbtest.COLDBOOT)), "coldboot-cold")
    if not os.access(real, os.X_OK):
        raise Skip("no coldboot-cold beside %s" % cbtest.COLDBOOT)
    seen = os.path.join(b.work, "helper-env")
    helper = b.fake_helper("recording-helper",
                           '#!/bin/sh\nprintf "%%s\\n" "${GLIBC_TUNABLES-unset}" > "%s"\n'
                           'exec "%s" "$@"\n' % (seen, real))
    tuned = "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=16777216"
    for name, extra_args, user_value, expected in (
            ("default budget", [], None, tuned),
            ("64M", ["--memory-budget", "64M"], None, tuned),
            ("32M", ["--memory-budget", "32M"], None, "unset"),
            ("the user's own", [], "glibc.malloc.arena_max=4", "glibc.malloc.arena_max=4")):
        env = cbtest.base_env({"COLDBOOT_COLD_EXE": helper})
        env.pop("GLIBC_TUNABLES", None)
        if user_value is not None:
            env["GLIBC_TUNABLES"] = user_value
        cache = os.path.join(b.work, "cache-" + name.replace(" ", "-"))
        argv = [cbtest.COLDBOOT, "--url", b.url, "--checksum", b.checksum, "--dir", cache] + extra_args
        proc = cbtest.run(argv + ["--", "sh", "-c", 'echo "handler:${GLIBC_TUNABLES-unset}"'], env=env)
        check_exit(proc, 0, "cold start, %s" % name)
        with open(seen) as f:
            check_equal(f.read().strip(), expected, "the helper's GLIBC_TUNABLES, %s" % name)
        check_equal(proc.stdout.strip(), "handler:%s" % (user_value or "unset"),
                    "the handler's GLIBC_TUNABLES, %s" % name)
        os.unlink(seen)


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
