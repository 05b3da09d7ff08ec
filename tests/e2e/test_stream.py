"""Unpacking while downloading, end to end: `coldboot ensure` over HTTP against
tests/servers/static_server.py and tests/servers/fault_server.py.

The bundle is big enough (over 1 MiB) for the tail to be fetched ahead on a
second connection, so extraction starts before the body is complete. Each
case checks which way the install went (the "unpacking while downloading" and
"unpacking the complete download again" log lines), the tree or the exit
status, and that a failure publishes nothing and leaves staging/ empty.
"""
import io
import os
import struct
import sys
import time
import zipfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import check, check_exit  # noqa: E402
from test_faults import FaultServer  # noqa: E402

STREAMING = "unpacking while downloading"
AGAIN = "unpacking the complete download again"
TIMEOUT_S = 20


def make_big_tree(root):
    """The layer tree, plus a few hundred small files and a 2 MiB one, so the zip streams."""
    cbtest.make_layer_tree(root)
    for i in range(300):
        body = (b"line %d of a small module\n" % i) * (1 + i % 50)
        cbtest.write_file(os.path.join(root, "python", "pkg%d" % (i % 7), "m%d.py" % i), body)
    cbtest.write_file(os.path.join(root, "lib", "libbig.so"), os.urandom(2 << 20), 0o755)
    return root


def hostile_zip(path, kind):
    """A zip over 1 MiB whose one fault only shows in a local header, near its end."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("a/big.bin")
        info.compress_type = zipfile.ZIP_STORED
        zf.writestr(info, os.urandom(3 << 19))
        info = zipfile.ZipInfo("a/b.txt")
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, b"hello from b\n" * 2000)
        zf.writestr("a/c.txt", b"the last entry\n")
    data = bytearray(buf.getvalue())
    if kind == "local-name":
        # The first "a/b.txt" is its local header's name; the central directory keeps the real one.
        at = data.find(b"a/b.txt")
        data[at:at + 7] = b"a/x.txt"
    elif kind == "overlap":
        # The central directory grows a/b.txt's data over the local header of a/c.txt.
        record = data.rfind(b"a/b.txt") - 46
        check(data[record:record + 4] == b"PK\x01\x02", "no central record found")
        comp = struct.unpack_from("<I", data, record + 20)[0]
        struct.pack_into("<I", data, record + 20, comp + 40)
    with open(path, "wb") as f:
        f.write(data)
    return path


class World:
    def __init__(self):
        self.work = cbtest.fresh_dir("stream")
        self.src = make_big_tree(os.path.join(self.work, "src"))
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        self.zip = cbtest.zip_with_python(self.src, os.path.join(self.www, "big.zip"))
        self.size = os.path.getsize(self.zip)
        check(self.size > (1 << 20) + (256 << 10), "the bundle is only %d bytes" % self.size)
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.digest = cbtest.digest_of(self.checksum)
        # About 50 MB/s: the body takes a while, as over a network, and the tail comes first.
        self.static = cbtest.StaticServer(self.www, bytes_per_second=50e6).start()
        self.faults = FaultServer(self.www).start()
        self.runs = 0

    def ensure(self, url, checksum=None, cache=None, timeout_s=TIMEOUT_S):
        self.runs += 1
        cache = cache or os.path.join(self.work, "cache-%d" % self.runs)
        started = time.monotonic()
        proc = cbtest.coldboot("ensure", "--url", url, "--checksum", checksum or self.checksum,
                               "--dir", cache, "--timeout", str(timeout_s), timeout=timeout_s + 30)
        return proc, cache, time.monotonic() - started

    def published(self, proc, cache):
        bundle = os.path.join(cache, "bundles", self.digest)
        check_exit(proc, 0)
        check(proc.stdout.strip() == bundle, "ensure printed %r, expected %r" % (proc.stdout, bundle))
        cbtest.check_same_tree(self.src, bundle)
        check_staging_empty(cache)

    def close(self):
        self.static.stop()
        self.faults.stop()


_world = None


def world():
    global _world
    if _world is None:
        _world = World()
    return _world


def check_staging_empty(cache):
    staging = os.path.join(cache, "staging")
    left = os.listdir(staging) if os.path.isdir(staging) else []
    check(left == [], "staging/ holds %r" % left)


def check_failed(proc, cache, code, *phrases):
    check_exit(proc, code)
    cbtest.check_nothing_published(cache)
    check_staging_empty(cache)
    cbtest.check_one_error(proc, *phrases)


def check_streamed(proc, again=False):
    check(STREAMING in proc.stderr, "did not unpack while downloading: %r" % proc.stderr[-1500:])
    check((AGAIN in proc.stderr) == again,
          "%s unpack again: %r" % ("did not" if again else "did", proc.stderr[-1500:]))


# ---- the streaming path is taken ----


def test_static_server_streams():
    w = world()
    proc, cache, _ = w.ensure(w.static.url("big.zip"))
    w.published(proc, cache)
    check_streamed(proc)
    with open(w.static.log_path, encoding="utf-8") as f:
        ranges = [line.split()[-1] for line in f if " 206 " in line]
    tail = "bytes=%d-%d" % (w.size - 128 * 1024, w.size - 1)
    check(tail in ranges, "no ranged GET of the tail (%s) in %r" % (tail, ranges))


def test_cut_body_resumes_while_streaming():
    w = world()
    path = "/pause/300/cut/%d/file/big.zip" % (w.size // 2)
    proc, cache, _ = w.ensure(w.faults.url(path))
    w.published(proc, cache)
    check_streamed(proc)
    seen = w.faults.requests(path)
    check(any(r["range"] == "bytes=%d-" % (w.size // 2) for r in seen), "no resume in %r" % seen)


def test_central_directory_before_the_tail_is_fetched_ahead():
    # 3,000 entries: a central directory of ~250 KiB starts before the 128 KiB tail.
    w = world()
    src = os.path.join(w.work, "many")
    for i in range(3000):
        cbtest.write_file(os.path.join(src, "site-packages", "p%02d" % (i % 30),
                                       "a_module_with_a_long_name_%04d.py" % i), "V = %d\n" % i)
    cbtest.write_file(os.path.join(src, "lib", "blob.bin"), os.urandom(2 << 20))
    zip_path = cbtest.zip_with_python(src, os.path.join(w.www, "many.zip"))
    size = os.path.getsize(zip_path)
    checksum = cbtest.coldboot_hash(zip_path)
    proc, cache, _ = w.ensure(w.static.url("many.zip"), checksum=checksum)
    check_exit(proc, 0)
    cbtest.check_same_tree(src, os.path.join(cache, "bundles", cbtest.digest_of(checksum)))
    check_streamed(proc)
    with open(w.static.log_path, encoding="utf-8") as f:
        ranges = [line.split()[-1] for line in f if "/many.zip 206 " in line]
    tail_start = size - 128 * 1024
    check(len(ranges) == 2 and ranges[1].endswith("-%d" % (tail_start - 1)),
          "expected the tail and then the central directory: %r" % ranges)


def test_big_entries_are_taken_as_they_arrive():
    # Entries over a worker's buffers (8 MiB by default) are inflated a slice at a time; a
    # worker takes each as soon as its local header arrives, and leaves the rest of its chunk
    # to whoever is free. Three of them among small files, on a trickling body.
    w = world()
    src = os.path.join(w.work, "bigs")
    for i in range(120):
        cbtest.write_file(os.path.join(src, "d%d" % (i // 40), "s%03d.txt" % i),
                          (b"small file %d\n" % i) * (1 + i))
    for i in range(3):
        body = b"".join(b"big %d line %d\n" % (i, n) for n in range(700000))
        check(len(body) > 9 << 20, "a big entry of only %d bytes" % len(body))
        cbtest.write_file(os.path.join(src, "d%d" % i, "t%d.bin.dat" % i), body)
    zip_path = cbtest.zip_with_python(src, os.path.join(w.www, "bigs.zip"))
    checksum = cbtest.coldboot_hash(zip_path)
    proc = cbtest.coldboot("ensure", "-v", "--url", w.faults.url("/slow/20000000/file/bigs.zip"),
                           "--checksum", checksum, "--dir", os.path.join(w.work, "cache-bigs"),
                           "--timeout", str(TIMEOUT_S), timeout=TIMEOUT_S + 30)
    check_exit(proc, 0)
    check_streamed(proc)
    cbtest.check_same_tree(src, os.path.join(w.work, "cache-bigs", "bundles",
                                             cbtest.digest_of(checksum)))
    ahead = [line for line in proc.stderr.splitlines() if "ahead of its chunk" in line]
    inline = [line for line in proc.stderr.splitlines() if "reached in its chunk" in line]
    check(len(ahead) >= 1 and len(ahead) + len(inline) == 3,
          "expected big entries taken as they arrived: %r, %r" % (ahead, inline))


# ---- fall-backs ----


def test_server_ignoring_range_falls_back():
    w = world()
    proc, cache, _ = w.ensure(w.faults.url("/ignore-range/slow/20000000/file/big.zip"))
    w.published(proc, cache)
    check(STREAMING not in proc.stderr, "streamed from a server that ignores Range")


def test_redirect_and_weak_or_missing_etag_fall_back():
    # A redirect's target is not the URL a ranged GET would ask; without a strong ETag the
    # tail cannot be proven to belong to the same object.
    # Paced (2 MB bursts every 0.1 s), so that the tail could come first; the first path is
    # the control that does stream.
    w = world()
    for path in ("/slow/20000000/file/big.zip", "/redirect/1/slow/20000000/file/big.zip",
                 "/weak-etag/slow/20000000/file/big.zip", "/no-etag/slow/20000000/file/big.zip"):
        proc, cache, _ = w.ensure(w.faults.url(path))
        w.published(proc, cache)
        check((STREAMING in proc.stderr) == (path.startswith("/slow/")),
              "%s: %r" % (path, proc.stderr[-800:]))


def test_etag_change_mid_download_unpacks_again():
    # Request 0 is the body (cut at half), 1 the tail, 2 the resume: another ETag by then.
    w = world()
    path = "/etag-from/2/pause/300/cut/%d/file/big.zip" % (w.size // 2)
    proc, cache, _ = w.ensure(w.faults.url(path))
    w.published(proc, cache)
    check_streamed(proc, again=True)


def test_download_failing_mid_stream_is_a_download_error():
    w = world()
    path = "/from503/2/pause/300/cut/%d/file/big.zip" % (w.size // 2)
    proc, cache, elapsed = w.ensure(w.faults.url(path), timeout_s=4)
    check_failed(proc, cache, 4, "503")
    check(STREAMING in proc.stderr, "did not unpack while downloading: %r" % proc.stderr[-1500:])
    check(elapsed <= 4 + 3, "took %.1f s with --timeout 4" % elapsed)


def test_truncated_body_is_a_download_error():
    w = world()
    proc, cache, _ = w.ensure(w.faults.url("/short/file/big.zip"), timeout_s=4)
    check_failed(proc, cache, 4)


def test_file_url_does_not_stream():
    w = world()
    proc, cache, _ = w.ensure("file://" + w.zip)
    w.published(proc, cache)
    check(STREAMING not in proc.stderr, "streamed a file:// URL")


# ---- refusals mid-stream ----


def test_wrong_checksum_while_streaming():
    w = world()
    proc, cache, _ = w.ensure(w.static.url("big.zip"), checksum="xxh3:" + "0" * 32)
    check_failed(proc, cache, 5, "checksum", w.checksum)
    check(STREAMING in proc.stderr, "did not unpack while downloading")


def test_hostile_local_headers_refused_mid_stream():
    w = world()
    for kind, phrase in (("local-name", "disagree on the name"), ("overlap", "overlaps the data")):
        name = "hostile-%s.zip" % kind
        path = hostile_zip(os.path.join(w.www, name), kind)
        proc, cache, _ = w.ensure(w.static.url(name), checksum=cbtest.coldboot_hash(path))
        check_failed(proc, cache, 6, phrase)
        check(STREAMING in proc.stderr, "%s: did not unpack while downloading" % kind)
        # The next start in the same cache installs the good bundle, with nothing left over.
        proc, cache, _ = w.ensure(w.static.url("big.zip"), cache=cache)
        w.published(proc, cache)
        check_equal_bundles(cache, [w.digest])


def check_equal_bundles(cache, digests):
    left = sorted(os.listdir(os.path.join(cache, "bundles")))
    check(left == sorted(digests), "bundles/ holds %r" % left)


if __name__ == "__main__":
    try:
        status = cbtest.main(globals())
    finally:
        if _world is not None:
            _world.close()
    sys.exit(status)
