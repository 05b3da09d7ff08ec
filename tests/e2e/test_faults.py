"""Downloads that go wrong, end to end: `coldboot ensure` against tests/servers/fault_server.py.

Each case checks the exit status (0 done, 4 download failed, 5 checksum
mismatch), that a failure publishes nothing under <dir>/bundles and leaves
no `current`, that stderr holds one clear error line, and that the run ends
within its --timeout.
"""
import os
import select
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import Failure, check, check_exit  # noqa: E402

# Process start, hashing and unpacking on top of the fetch's own deadline.
SLACK_S = 2.0


class FaultServer:
    """tests/servers/fault_server.py serving --root on 127.0.0.1, in its own process."""

    def __init__(self, root, max_seconds=300.0, extra_args=()):
        self.root = root
        self.max_seconds = max_seconds
        self.extra_args = [str(a) for a in extra_args]
        self.proc = None
        self.port = None

    def start(self, timeout_s=20.0):
        script = os.path.join(cbtest.REPO, "tests", "servers", "fault_server.py")
        self.proc = subprocess.Popen([sys.executable, script, "--root", self.root,
                                      "--max-seconds", str(self.max_seconds)] + self.extra_args,
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise Failure("fault server did not print its port within %.0f s" % timeout_s)
        self.port = int(line)
        return self

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def requests(self, path):
        """The requests the server saw for path, as dicts (range, if_match, status)."""
        import json
        with urllib.request.urlopen(self.url("/__requests" + path), timeout=10) as reply:
            return [json.loads(line) for line in reply.read().decode().splitlines() if line]

    def stop(self):
        if self.proc is None:
            return
        cbtest.stop_process(self.proc)
        self.proc = None


class World:
    """A layer-style bundle zip served by the fault server, plus fresh cache roots."""

    def __init__(self):
        self.work = cbtest.fresh_dir("faults")
        self.src = cbtest.make_layer_tree(os.path.join(self.work, "src"))
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        self.zip = cbtest.zip_with_python(self.src, os.path.join(self.www, "b.zip"))
        self.size = os.path.getsize(self.zip)
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.digest = cbtest.digest_of(self.checksum)
        self.server = FaultServer(self.www).start()
        self.runs = 0

    def ensure(self, path, timeout_s=20, checksum=None, url=None, extra=()):
        """Runs `coldboot ensure` on the fault server's path; returns (proc, cache dir, seconds)."""
        self.runs += 1
        cache = os.path.join(self.work, "cache-%d" % self.runs)
        argv = ["ensure", "--url", url or self.server.url(path), "--checksum",
                checksum or self.checksum, "--dir", cache, "--timeout", str(timeout_s)]
        started = time.monotonic()
        proc = cbtest.coldboot(*(argv + list(extra)), timeout=timeout_s + 30)
        return proc, cache, time.monotonic() - started

    def published(self, proc, cache):
        bundle = os.path.join(cache, "bundles", self.digest)
        check_exit(proc, 0)
        check(proc.stdout.strip() == bundle, "ensure printed %r, expected %r" % (proc.stdout, bundle))
        cbtest.check_same_tree(self.src, bundle)
        check(os.path.realpath(os.path.join(cache, "current")) == bundle, "current does not point at the bundle")

    def close(self):
        self.server.stop()


_world = None


def world():
    global _world
    if _world is None:
        _world = World()
    return _world


def check_failed(proc, cache, code, elapsed_s, timeout_s, *phrases):
    check_exit(proc, code)
    cbtest.check_nothing_published(cache)
    check(elapsed_s <= timeout_s + SLACK_S, "took %.1f s with --timeout %d" % (elapsed_s, timeout_s))
    cbtest.check_one_error(proc, *phrases)


# ---- recoverable faults: the install completes ----


def test_cut_body_is_resumed():
    w = world()
    path = "/cut/%d/file/b.zip" % (w.size // 3)
    proc, cache, _ = w.ensure(path)
    w.published(proc, cache)
    seen = w.server.requests(path)
    check(len(seen) == 2, "expected 2 requests, saw %r" % seen)
    check(seen[1]["range"] == "bytes=%d-" % (w.size // 3), "the second request was %r" % seen[1])
    check(seen[1]["if_match"] is not None and seen[1]["status"] == 206, "not resumed: %r" % seen[1])
    check("2 attempts" in proc.stderr, "stderr does not count attempts: %r" % proc.stderr)


def test_reset_connection_is_resumed():
    w = world()
    proc, cache, _ = w.ensure("/rst/1000/file/b.zip")
    w.published(proc, cache)


def test_every_response_cut_still_completes():
    w = world()
    proc, cache, _ = w.ensure("/cutevery/%d/file/b.zip" % (w.size // 4 + 1))
    w.published(proc, cache)


def test_503_then_ok():
    w = world()
    proc, cache, _ = w.ensure("/503x2/file/b.zip")
    w.published(proc, cache)
    check("3 attempts" in proc.stderr, "expected 3 attempts: %r" % proc.stderr)


def test_retry_after_is_honoured():
    w = world()
    proc, cache, elapsed = w.ensure("/retryafter/1/file/b.zip")
    w.published(proc, cache)
    check(elapsed >= 1.0, "Retry-After: 1 was not waited for (%.2f s)" % elapsed)


def test_resume_that_is_not_the_same_body_restarts():
    w = world()
    for fault in ("ignore-range", "etag-changes", "if-match-412", "bad-range", "no-etag"):
        proc, cache, _ = w.ensure("/%s/cut/%d/file/b.zip" % (fault, w.size // 2))
        w.published(proc, cache)


def test_redirects_are_followed():
    w = world()
    proc, cache, _ = w.ensure("/redirect/2/file/b.zip")
    w.published(proc, cache)


def test_file_url():
    w = world()
    proc, cache, _ = w.ensure(None, url="file://" + w.zip)
    w.published(proc, cache)


# ---- faults that end the install ----


def test_always_500_gives_up_within_the_deadline():
    w = world()
    proc, cache, elapsed = w.ensure("/always500/file/b.zip", timeout_s=3)
    check_failed(proc, cache, 4, elapsed, 3, "HTTP 500", "gave up after")


def test_stall_after_headers_hits_the_deadline():
    w = world()
    proc, cache, elapsed = w.ensure("/stall-after-headers/file/b.zip", timeout_s=3)
    check_failed(proc, cache, 4, elapsed, 3)


def test_404_fails_at_once():
    w = world()
    proc, cache, elapsed = w.ensure("/always404/file/b.zip")
    check_failed(proc, cache, 4, elapsed, 20, "HTTP 404")
    check(elapsed < 2.0, "a 404 took %.1f s" % elapsed)


def test_s3_style_errors_say_what_to_do():
    w = world()
    cases = [
        ("/s3err/301/PermanentRedirect/file/b.zip", "set AWS_REGION=eu-west-2"),
        ("/expired/file/b.zip", "make a new one"),
        ("/s3err/403/SignatureDoesNotMatch/file/b.zip", "presign it again"),
        ("/s3err/404/NoSuchKey/file/b.zip", "NoSuchKey"),
    ]
    for path, phrase in cases:
        proc, cache, elapsed = w.ensure(path)
        check_failed(proc, cache, 4, elapsed, 20, phrase)
        check(elapsed < 2.0, "%s took %.1f s" % (path, elapsed))


def test_redirect_to_file_is_refused():
    w = world()
    for path in ("/redirect-file/file/b.zip", "/redirect-ftp/file/b.zip"):
        proc, cache, elapsed = w.ensure(path)
        check_failed(proc, cache, 4, elapsed, 20, "redirect")


def test_truncated_close_delimited_body_fails_the_checksum():
    # HTTP cannot tell this body is short; the pinned checksum does.
    w = world()
    proc, cache, elapsed = w.ensure("/close-delimited-truncated/file/b.zip")
    check_failed(proc, cache, 5, elapsed, 20, "checksum")


def test_always_short_body_gives_up():
    w = world()
    proc, cache, elapsed = w.ensure("/short/file/b.zip", timeout_s=5)
    check_failed(proc, cache, 4, elapsed, 5)


def test_wrong_checksum_publishes_nothing():
    w = world()
    wrong = "xxh3:" + ("0" * 32)
    proc, cache, elapsed = w.ensure("/file/b.zip", checksum=wrong)
    check_failed(proc, cache, 5, elapsed, 20, w.checksum)


def test_presigned_query_never_printed():
    w = world()
    secret = "X-Amz-Credential=AKIAEXAMPLESECRET%2F20260101&X-Amz-Signature=feedfacecafe"
    for path in ("/always403/file/b.zip?", "/cut/100/id/q/file/b.zip?"):
        proc, cache, _ = w.ensure(None, url=w.server.url(path + secret))
        for text in (proc.stderr, proc.stdout):
            check("AKIAEXAMPLESECRET" not in text and "feedfacecafe" not in text,
                  "a presigned secret was printed: %r" % text)
        marker = os.path.join(cache, "bundles", w.digest, cbtest.MARKER_NAME)
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                check("feedfacecafe" not in f.read(), "the marker holds the signature")


def test_size_cap_refuses_a_huge_body():
    w = world()
    proc, cache, elapsed = w.ensure("/huge-length/file/b.zip", extra=["--max-size", "1M"])
    check_failed(proc, cache, 4, elapsed, 20, "larger than")


if __name__ == "__main__":
    try:
        status = cbtest.main(globals())
    finally:
        if _world is not None:
            _world.close()
    sys.exit(status)
