"""The body in parts on more connections, end to end: `coldboot ensure` over HTTP against
tests/servers/static_server.py and tests/servers/fault_server.py, both paced per connection.

When one connection brings the body slowly (as one S3 GET does) and the unpacker keeps up,
coldboot fetches the rest of the body in 4 MiB parts on up to four more connections, each
part in memory until the body reaches it. Each case checks the tree that was published, the
requests the server saw, and, where a part fails or the object changes, that the install
still ends with the right tree and leaves staging/ empty.
"""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import check, check_exit  # noqa: E402
from test_faults import FaultServer  # noqa: E402

PART = 4 << 20
PARTS_LINE = "the rest comes in parts of 4 MiB"
PART_FAILED = "a part of the body on another connection failed"
AGAIN = "unpacking the complete download again"
TIMEOUT_S = 30
# The default budget, named so that the number of parts does not depend on the environment.
BUDGET = "64M"
RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class World:
    """A ~44 MB zip of few entries (so the memory left beside the unpacker holds four parts)."""

    def __init__(self):
        self.work = cbtest.fresh_dir("parts")
        self.src = os.path.join(self.work, "src")
        cbtest.make_layer_tree(self.src)
        for i in range(8):
            cbtest.write_file(os.path.join(self.src, "lib", "blob%d.bin" % i), os.urandom(5 << 20))
        for i in range(200):
            cbtest.write_file(os.path.join(self.src, "python", "pkg", "m%03d.py" % i),
                              (b"value_%d = %d\n" % (i, i)) * (20 + i))
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        self.zip = cbtest.zip_with_python(self.src, os.path.join(self.www, "parts.zip"))
        self.size = os.path.getsize(self.zip)
        check(self.size > 40 << 20, "the bundle is only %d bytes" % self.size)
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.digest = cbtest.digest_of(self.checksum)
        # 30 MB/s per connection: the body alone would take about 1.5 s.
        self.static = cbtest.StaticServer(self.www, bytes_per_second=30e6).start()
        self.faults = FaultServer(self.www).start()
        self.runs = 0

    def ensure(self, url, *extra):
        self.runs += 1
        cache = os.path.join(self.work, "cache-%d" % self.runs)
        proc = cbtest.coldboot("ensure", "-v", "--url", url, "--checksum", self.checksum,
                               "--dir", cache, "--timeout", str(TIMEOUT_S),
                               "--memory-budget", BUDGET, *extra, timeout=TIMEOUT_S + 30)
        return proc, cache

    def check_published(self, proc, cache):
        bundle = os.path.join(cache, "bundles", self.digest)
        check_exit(proc, 0)
        check(proc.stdout.strip() == bundle, "ensure printed %r, expected %r" % (proc.stdout, bundle))
        cbtest.check_same_tree(self.src, bundle)
        staging = os.path.join(cache, "staging")
        left = os.listdir(staging) if os.path.isdir(staging) else []
        check(left == [], "staging/ holds %r" % left)

    def close(self):
        self.static.stop()
        self.faults.stop()


_world = None


def world():
    global _world
    if _world is None:
        _world = World()
    return _world


def tail(proc):
    return proc.stderr[-2500:]


def closed_ranges(headers):
    """(first, last) of every Range header of the form bytes=FIRST-LAST, in request order."""
    out = []
    for header in headers:
        m = RANGE_RE.match(header or "")
        if m and m.group(2):
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def part_ranges(headers, size):
    """The parts: closed ranges other than the tail (the only one that ends at the last byte
    and starts 128 KiB before it)."""
    return [r for r in closed_ranges(headers) if r != (size - (128 << 10), size - 1)]


def static_ranges(w, name):
    with open(w.static.log_path, encoding="utf-8") as f:
        rows = [line.split() for line in f if " /%s " % name in line]
    return [r[-1] for r in rows if r[2] == "206"]


def test_slow_connection_brings_the_rest_in_parts():
    w = world()
    before = len(static_ranges(w, "parts.zip"))
    proc, cache = w.ensure(w.static.url("parts.zip"))
    w.check_published(proc, cache)
    check(PARTS_LINE in proc.stderr and "on 4 more" in proc.stderr,
          "no parts on four more connections: %r" % tail(proc))
    parts = sorted(part_ranges(static_ranges(w, "parts.zip")[before:], w.size))
    check(len(parts) >= 4, "expected 4 parts or more, saw %r" % parts)
    # Back to back, no byte asked twice, every part whole but the last, and the last ends
    # at the last byte.
    for (first, last), (nxt, _) in zip(parts, parts[1:]):
        check(last + 1 == nxt, "parts %r are not back to back" % parts)
        check(last - first + 1 == PART, "a part of %d bytes before the last: %r" %
              (last - first + 1, parts))
    check(parts[-1][1] == w.size - 1, "the parts end at %d of %d" % (parts[-1][1], w.size))


def test_part_cut_after_the_handoff_is_resumed():
    # Requests 0 (the body), 1 (the tail) and 2-5 (the first four parts) come before the body
    # reaches the parts; request 6, a fifth part, only once a lane has handed its first part
    # over. Cut it: the download resumes from what the sink holds, on one connection.
    w = world()
    path = "/slow/30000000/cut-request/6/1000000/file/parts.zip"
    proc, cache = w.ensure(w.faults.url(path))
    w.check_published(proc, cache)
    check(PARTS_LINE in proc.stderr, "no parts: %r" % tail(proc))
    check(PART_FAILED in proc.stderr, "the cut part was not reported: %r" % tail(proc))
    seen = w.faults.requests(path)
    headers = [r["range"] for r in seen]
    parts = part_ranges(headers, w.size)
    cut = [closed_ranges([r["range"]]) for r in seen if r["nth"] == 6]
    check(len(parts) >= 5 and cut and cut[0], "expected 5 parts or more, saw %r" % seen)
    cut_first = cut[0][0][0]
    # One resume, from what the sink holds: past where the parts began, and not past the cut
    # part's first bytes (which reached the sink as they arrived). Parts after the one the
    # body had reached are fetched again by the resumed GET.
    resumes = [int(m.group(1)) for m in (RANGE_RE.match(h or "") for h in headers[1:])
               if m and not m.group(2)]
    check(len(resumes) == 1, "expected one resume, saw %r" % seen)
    check(min(first for first, _ in parts) <= resumes[0] <= cut_first + 1000000,
          "the resume at %d is not between the parts' start and the cut part (%d): %r" %
          (resumes[0], cut_first, seen))


def test_object_changing_under_the_parts_unpacks_again():
    # From request 6 on, the server names another ETag: the fifth part is refused as another
    # object's, the resume is refused for the same reason, and the whole body comes again.
    w = world()
    path = "/slow/30000000/etag-from/6/file/parts.zip"
    proc, cache = w.ensure(w.faults.url(path))
    w.check_published(proc, cache)
    check(PARTS_LINE in proc.stderr, "no parts: %r" % tail(proc))
    check("the object changed while it was downloaded" in proc.stderr,
          "the change was not seen: %r" % tail(proc))
    check(AGAIN in proc.stderr, "did not unpack the complete download again: %r" % tail(proc))


def test_part_failing_before_the_handoff_leaves_the_body_to_one_connection():
    # Request 3 is the second part, cut long before the body reaches it (the body comes at
    # 10 MB/s here, so the 4 MiB before the parts take 0.4 s): the parts are given up, the
    # first connection goes on past where they began, and no part is asked again.
    w = world()
    path = "/slow/10000000/cut-request/3/100000/file/parts.zip"
    proc, cache = w.ensure(w.faults.url(path))
    w.check_published(proc, cache)
    check(PARTS_LINE in proc.stderr, "no parts: %r" % tail(proc))
    check(PART_FAILED not in proc.stderr, "a part failed after the handoff: %r" % tail(proc))
    seen = w.faults.requests(path)
    check(len(seen) == 6 and all(r["status"] in (200, 206) for r in seen),
          "expected the body, the tail and four parts, saw %r" % seen)


def test_small_entries_leave_room_for_parts():
    # 3,000 files of 10 KiB (random, so the zip is ~30 MB) under a 40 MiB budget: planned for
    # entries of up to 8 MiB, the workers' buffers would take all the budget leaves; sized to
    # the largest entry (1 MiB each), they leave room for parts.
    w = world()
    src = os.path.join(w.work, "small-src")
    for i in range(3000):
        cbtest.write_file(os.path.join(src, "site-packages", "p%02d" % (i % 40), "m%04d.so" % i),
                          os.urandom(10 << 10))
    zip_path = cbtest.zip_with_python(src, os.path.join(w.www, "small.zip"))
    checksum = cbtest.coldboot_hash(zip_path)
    cache = os.path.join(w.work, "cache-small")
    proc = cbtest.coldboot("ensure", "-v", "--url", w.static.url("small.zip"), "--checksum",
                           checksum, "--dir", cache, "--timeout", str(TIMEOUT_S),
                           "--memory-budget", "40M", timeout=TIMEOUT_S + 30)
    check_exit(proc, 0)
    cbtest.check_same_tree(src, os.path.join(cache, "bundles", cbtest.digest_of(checksum)))
    check("the largest entry is" in proc.stderr, "buffers not sized to the entries: %r" % tail(proc))
    check(PARTS_LINE in proc.stderr, "no parts: %r" % tail(proc))


def test_small_memory_budget_keeps_one_connection():
    # 16 MiB is the least budget: the unpacker takes it all, so no part fits beside it.
    w = world()
    before = len(static_ranges(w, "parts.zip"))
    proc, cache = w.ensure(w.static.url("parts.zip"), "--memory-budget", "16M")
    w.check_published(proc, cache)
    check(PARTS_LINE not in proc.stderr, "parts beside a 16 MiB budget: %r" % tail(proc))
    check("too little memory" in proc.stderr, "the reason was not logged: %r" % tail(proc))
    parts = part_ranges(static_ranges(w, "parts.zip")[before:], w.size)
    check(parts == [], "parts were fetched: %r" % parts)


if __name__ == "__main__":
    try:
        status = cbtest.main(globals())
    finally:
        if _world is not None:
            _world.close()
    sys.exit(status)
