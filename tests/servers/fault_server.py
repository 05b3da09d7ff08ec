#!/usr/bin/env python3
"""A loopback HTTP server that misbehaves on demand, for coldboot's download tests.

    fault_server.py [--root DIR] [--max-seconds N]

It binds 127.0.0.1 on a free port, prints the port on the first line of
stdout, and exits by itself after --max-seconds (default 120) or on SIGTERM.

The URL path is a list of fault segments followed by a body source:

    /<fault>/<fault>/.../gen/<SIZE>     SIZE bytes of a fixed pattern (see pattern())
    /<fault>/.../file/<NAME>            the file NAME from --root

Faults (state such as "the first request" is kept per full path, so a test
that wants fresh state adds an `id/<anything>/` segment):

    id/<x>                  no effect: makes the path unique
    cut/<N>                 the first response is cut (connection closed) after N body bytes
    cut-request/<K>/<N>     the K-th request's (0-based) response is cut after N body bytes
    cutevery/<N>            every response is cut after N body bytes (the client must resume)
    rst/<N>                 the first response is reset (TCP RST) after N body bytes
    <CODE>x<K>              the first K requests are answered with status CODE (e.g. 503x2)
    always<CODE>            every request is answered with status CODE (e.g. always500)
    retryafter/<S>          the first request gets 503 with "Retry-After: S"
    close-delimited-truncated   no Content-Length, HTTP/1.0 style; the body stops at half and the
                            connection closes (indistinguishable from a whole body)
    stall-after-headers     headers, then silence (until the client gives up)
    stall-once/<N>          the first response sends N body bytes, then stalls
    ignore-range            Range is ignored: always 200 with the whole body
    etag-changes            every response has a new ETag, and If-Match is ignored (as s3rver does)
    etag-from/<K>           requests from the K-th on (0-based) get another ETag (same body)
    from503/<K>             requests from the K-th on (0-based) are answered with 503
    pause/<MS>              a response cut by cut/<N> waits MS ms before the connection closes
    if-match-412            every response has a new ETag, and If-Match is honoured with 412
    no-etag                 no ETag header
    weak-etag               a weak ETag (W/"...")
    bad-range               a 206 whose Content-Range starts at 0 whatever was asked
    short                   every response claims the whole length but sends only half of it
                            (a resumed request gets no byte at all)
    slow/<BPS>              the body trickles at BPS bytes per second
    redirect/<K>            K redirects (302) before the body
    redirect-file           a 302 to file:///etc/passwd
    redirect-ftp            a 302 to ftp://127.0.0.1/x
    s3err/<CODE>/<S3CODE>   an S3-style XML error: status CODE, <Code>S3CODE</Code>, a message;
                            a 301 also carries x-amz-bucket-region and <Region> eu-west-2
    expired                 403 AccessDenied "Request has expired" (an expired presigned URL)
    big-error/<CODE>        status CODE with a 1 MiB body
    huge-length             a 200 that announces Content-Length 2^40 and sends little

With --tls-self-signed it speaks HTTPS with a fresh self-signed certificate
(made by the openssl command), which a client that verifies TLS must refuse.

With --proxy-to PORT every other request is forwarded, headers and all, to
127.0.0.1:PORT (e.g. a local S3, so signatures are checked upstream), and the
first response for each path is cut after --proxy-cut N body bytes. With
--proxy-bytes-per-second N each response's body is sent at about N bytes a
second, as one S3 GET over a real network.

GET /__requests/<path> answers the requests made so far for <path>, one JSON
object a line: {"range": ..., "if_match": ..., "status": ..., "nth": ...}, where nth
is the request's place in arrival order (what the faults count).
"""
import argparse
import hashlib
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import serving  # noqa: E402 (after the line above)

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
STATUS_TIMES_RE = re.compile(r"^(\d{3})x(\d+)$")
ALWAYS_RE = re.compile(r"^always(\d{3})$")

# Faults that take one argument segment.
WITH_ARG = {"id", "cut", "cutevery", "rst", "retryafter", "stall-once", "slow", "redirect",
            "big-error", "etag-from", "from503", "pause"}
WITH_TWO_ARGS = {"s3err", "cut-request"}

_pattern_cache = {}
_pattern_lock = threading.Lock()


def pattern(size):
    """Byte i is (i * 131 + (i >> 9)) & 0xff: cheap to check from C."""
    with _pattern_lock:
        data = _pattern_cache.get(size)
        if data is None:
            block = bytes(((i * 131) + (i >> 9)) & 0xFF for i in range(size))
            data = block
            if len(_pattern_cache) < 64:
                _pattern_cache[size] = data
        return data


# Files and their SHA-1 by (path, mtime, size): parallel ranged GETs of a 40 MB file would
# otherwise read and hash it once per request, under the GIL, and arrive late.
_file_cache = {}
_digest_cache = {}
_file_lock = threading.Lock()


def read_file(path):
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    with _file_lock:
        body = _file_cache.get(key)
    if body is None:
        with open(path, "rb") as f:
            body = f.read()
        with _file_lock:
            if len(_file_cache) >= 8:
                _file_cache.clear()
                _digest_cache.clear()
            _file_cache[key] = body
    return body


def body_digest(body):
    with _file_lock:
        digest = _digest_cache.get(id(body))
        if digest is not None and digest[0] is body:
            return digest[1]
    value = hashlib.sha1(body).hexdigest()
    with _file_lock:
        if len(_digest_cache) < 64:
            _digest_cache[id(body)] = (body, value)
    return value


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "cbtest-fault/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def handle(self):
        # Clients that give up mid-request are what this server is for: no tracebacks.
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            self.close_connection = True

    # ---- bookkeeping ----

    def _count(self, path):
        """How many requests for path came before this one (0 for the first)."""
        with self.server.lock:
            n = self.server.counts.get(path, 0)
            self.server.counts[path] = n + 1
            return n

    def _record(self, path, status):
        with self.server.lock:
            self.server.requests.setdefault(path, []).append({
                "range": self.headers.get("Range"),
                "if_match": self.headers.get("If-Match"),
                "status": status,
                "nth": getattr(self, "nth", None),  # the request's place in arrival order
            })

    # ---- replies ----

    def _simple(self, path, status, body=b"", headers=()):
        self._record(path, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml" if body.startswith(b"<?xml") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _s3_error(self, path, status, code, message, headers=(), region=None):
        region_xml = "<Region>%s</Region>" % region if region else ""
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                "<Message>%s</Message>%s<RequestId>0</RequestId></Error>"
                % (code, message, region_xml)).encode()
        self._simple(path, status, body, headers)

    def _close_now(self, reset=False):
        self.wfile.flush()
        if reset:
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.close_connection = True
        self.connection.close()

    def _stall(self):
        """Sends nothing until the client goes away or the server's life ends."""
        self.wfile.flush()
        self.connection.settimeout(1.0)
        end = time.monotonic() + self.server.max_seconds
        while time.monotonic() < end:
            try:
                if self.connection.recv(1) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        self.close_connection = True

    def do_GET(self):  # noqa: N802 (the base class's name)
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _get(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/__requests/"):
            wanted = path[len("/__requests"):]
            with self.server.lock:
                lines = "".join(json.dumps(r) + "\n" for r in self.server.requests.get(wanted, []))
            body = lines.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return

        if self.server.proxy_to is not None:
            self._proxy(path)
            return

        parts = [p for p in path.split("/") if p]
        faults = {}
        i = 0
        while i < len(parts) and parts[i] not in ("gen", "file"):
            name = parts[i]
            if name in WITH_ARG or name in WITH_TWO_ARGS:
                count = 2 if name in WITH_TWO_ARGS else 1
                faults[name] = parts[i + 1:i + 1 + count]
                i += 1 + count
            else:
                faults[name] = []
                i += 1
        if i >= len(parts):
            self._simple(path, 404, b"no body source in the path\n")
            return
        source, arg = parts[i], "/".join(parts[i + 1:])
        if source == "gen":
            if not arg.isdigit():
                self._simple(path, 404, b"gen needs a size\n")
                return
            body = pattern(int(arg))
        else:
            if self.server.root is None or "/" in arg or arg in ("", ".", ".."):
                self._simple(path, 404, b"no such file\n")
                return
            try:
                body = read_file(os.path.join(self.server.root, arg))
            except OSError:
                self._simple(path, 404, b"no such file\n")
                return

        nth = self.nth = self._count(path)
        self._reply(path, faults, body, nth)

    def _proxy(self, path):
        nth = self.nth = self._count(path)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.proxy_to, timeout=30)
        headers = {name: value for name, value in self.headers.items()}
        conn.request("GET", self.path, headers=headers)
        upstream = conn.getresponse()
        body = upstream.read()
        self._record(path, upstream.status)
        self.send_response(upstream.status)
        for name, value in upstream.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "keep-alive", "date", "server"):
                self.send_header(name, value)
        self.end_headers()
        limit = len(body)
        if nth == 0 and self.server.proxy_cut is not None:
            limit = min(limit, self.server.proxy_cut)
        conn.close()
        self._send_paced(body[:limit], self.server.proxy_bytes_per_second)
        if limit < len(body):
            self._close_now()

    def _send_paced(self, data, bps):
        """Writes data at about bps bytes a second (in tenths of it, 0.1 s apart), or at once."""
        if not bps:
            self.wfile.write(data)
            return
        step = max(1, int(bps) // 10)
        for at in range(0, len(data), step):
            self.wfile.write(data[at:at + step])
            self.wfile.flush()
            if at + step < len(data):
                time.sleep(0.1)

    def _reply(self, path, faults, body, nth):
        size = len(body)
        # ---- answers that are not the body ----
        for name in faults:
            m = STATUS_TIMES_RE.match(name)
            if m and nth < int(m.group(2)):
                self._simple(path, int(m.group(1)), b"injected %s\n" % m.group(1).encode())
                return
            m = ALWAYS_RE.match(name)
            if m:
                self._simple(path, int(m.group(1)), b"injected %s\n" % m.group(1).encode())
                return
        if "from503" in faults and nth >= int(faults["from503"][0]):
            self._simple(path, 503, b"injected 503\n")
            return
        if "retryafter" in faults and nth == 0:
            self._simple(path, 503, b"slow down\n", [("Retry-After", faults["retryafter"][0])])
            return
        if "redirect" in faults:
            left = int(faults["redirect"][0]) - nth
            if left > 0:
                self._simple(path, 302, b"", [("Location", path)])
                return
        if "redirect-file" in faults:
            self._simple(path, 302, b"", [("Location", "file:///etc/passwd")])
            return
        if "redirect-ftp" in faults:
            self._simple(path, 302, b"", [("Location", "ftp://127.0.0.1/x")])
            return
        if "s3err" in faults:
            status, code = int(faults["s3err"][0]), faults["s3err"][1]
            headers, region = [], None
            if status == 301:
                headers, region = [("x-amz-bucket-region", "eu-west-2")], "eu-west-2"
            self._s3_error(path, status, code, "Injected %s." % code, headers, region)
            return
        if "expired" in faults:
            self._s3_error(path, 403, "AccessDenied", "Request has expired")
            return
        if "big-error" in faults:
            self._simple(path, int(faults["big-error"][0]), b"E" * (1 << 20))
            return

        # ---- the body ----
        digest = body_digest(body)
        etag = '"%s"' % digest
        if "etag-changes" in faults or "if-match-412" in faults:
            etag = '"%s-%d"' % (digest[:16], nth)
        if "etag-from" in faults and nth >= int(faults["etag-from"][0]):
            etag = '"%s-changed"' % digest[:16]
        if "weak-etag" in faults:
            etag = "W/" + etag
        if "if-match-412" in faults:
            wanted = self.headers.get("If-Match")
            if wanted is not None and wanted != etag:
                self._simple(path, 412, b"precondition failed\n")
                return

        start, end, status = 0, size - 1, 200
        range_header = self.headers.get("Range")
        m = RANGE_RE.match(range_header.strip()) if range_header else None
        if m and "ignore-range" not in faults:
            start = int(m.group(1))
            if m.group(2):
                end = min(end, int(m.group(2)))
            if start >= size or start > end:
                self._simple(path, 416, b"", [("Content-Range", "bytes */%d" % size)])
                return
            status = 206
        part = body[start:end + 1]
        self._record(path, status)

        if "close-delimited-truncated" in faults:
            # HTTP/1.0 framing: the body ends when the connection closes.
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Connection: close\r\n\r\n")
            self.wfile.write(part[:len(part) // 2])
            self._close_now()
            return

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if "huge-length" in faults:
            self.send_header("Content-Length", str(1 << 40))
        else:
            self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        if "no-etag" not in faults:
            self.send_header("ETag", etag)
        if status == 206:
            first = 0 if "bad-range" in faults else start
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, end, size))
        self.end_headers()

        limit = len(part)
        reset = False
        stall = False
        if "cut" in faults and nth == 0:
            limit = min(limit, int(faults["cut"][0]))
        if "cut-request" in faults and nth == int(faults["cut-request"][0]):
            limit = min(limit, int(faults["cut-request"][1]))
        if "cutevery" in faults:
            limit = min(limit, int(faults["cutevery"][0]))
        if "rst" in faults and nth == 0:
            limit, reset = min(limit, int(faults["rst"][0])), True
        if "short" in faults:
            limit = max(0, size // 2 - start)
        if "huge-length" in faults:
            limit = min(limit, 1000)
        if "stall-after-headers" in faults:
            limit, stall = 0, True
        if "stall-once" in faults and nth == 0:
            limit, stall = min(limit, int(faults["stall-once"][0])), True

        if "slow" in faults:
            bps = max(1, int(faults["slow"][0]))
            sent = 0
            step = max(1, bps // 10)
            while sent < limit:
                self.wfile.write(part[sent:min(sent + step, limit)])
                self.wfile.flush()
                sent += step
                if sent < limit:
                    time.sleep(0.1)
        else:
            self.wfile.write(part[:limit])
        if stall:
            self._stall()
            return
        if "pause" in faults and limit < len(part):
            self.wfile.flush()
            time.sleep(int(faults["pause"][0]) / 1000.0)
        if limit < len(part) or "huge-length" in faults:
            self._close_now(reset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--proxy-to", type=int)
    parser.add_argument("--proxy-cut", type=int)
    parser.add_argument("--proxy-bytes-per-second", type=float, default=0.0)
    parser.add_argument("--tls-self-signed", action="store_true")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.root = os.path.abspath(args.root) if args.root else None
    server.max_seconds = args.max_seconds
    server.lock = threading.Lock()
    server.counts = {}
    server.requests = {}
    server.proxy_to = args.proxy_to
    server.proxy_cut = args.proxy_cut
    server.proxy_bytes_per_second = args.proxy_bytes_per_second
    if args.tls_self_signed:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], check=True, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)

    serving.run(server, args.max_seconds)
    # Stalled handler threads are daemons: leave without waiting for them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
