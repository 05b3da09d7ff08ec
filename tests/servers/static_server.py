#!/usr/bin/env python3
"""A plain static HTTP server for the end-to-end tests, bound to 127.0.0.1 only.

    static_server.py --root DIR [--log FILE] [--max-seconds N] [--bytes-per-second N]

It picks a free port, prints it on the first line of stdout, then serves the
files under DIR like any static web server: GET and HEAD, a single byte range
(206 with Content-Range, 416 when unsatisfiable), 404 for what is missing.
Every request is appended to --log as one line "METHOD PATH STATUS BYTES
RANGE" (flushed at once), so a test can assert how many requests were made.
It exits by itself after --max-seconds (default 600), or on SIGTERM/SIGINT.
With --bytes-per-second each response's body is paced at about that rate, as
over a real network (the loopback is faster than any extraction).
"""
import argparse
import http.server
import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import serving  # noqa: E402 (after the line above)

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "cbtest-static/1"
    protocol_version = "HTTP/1.1"

    def _log_line(self, status, sent, range_header):
        server = self.server
        line = "%s %s %d %d %s\n" % (self.command, self.path, status, sent, range_header or "-")
        with server.log_lock:
            if server.log_file is not None:
                server.log_file.write(line)
                server.log_file.flush()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        # The request log above is the record; keep stderr quiet.
        pass

    def _resolve(self):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return None
        full = os.path.join(self.server.root, *parts)
        if not os.path.isfile(full):
            return None
        return full

    def _send_status(self, status, range_header, extra_headers=()):
        body = ("%d\n" % status).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            self.wfile.write(body)
            sent = len(body)
        self._log_line(status, sent, range_header)

    def _serve(self):
        range_header = self.headers.get("Range")
        full = self._resolve()
        if full is None:
            self._send_status(404, range_header)
            return
        size = os.path.getsize(full)
        start, end, status = 0, size - 1, 200
        if range_header is not None:
            m = RANGE_RE.match(range_header.strip())
            # Anything but one simple range is answered with the whole file, as servers may.
            if m is not None and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else size - 1
                else:
                    start = max(0, size - int(m.group(2)))
                    end = size - 1
                end = min(end, size - 1)
                if start >= size or start > end:
                    self._send_status(416, range_header, [("Content-Range", "bytes */%d" % size)])
                    return
                status = 206
        length = end - start + 1 if size > 0 else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        st = os.stat(full)
        self.send_header("ETag", '"%x-%x"' % (st.st_size, st.st_mtime_ns))
        self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            with open(full, "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    chunk = f.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += len(chunk)
                    left -= len(chunk)
                    if self.server.bytes_per_second > 0:
                        time.sleep(len(chunk) / self.server.bytes_per_second)
        self._log_line(status, sent, range_header)

    def do_GET(self):  # noqa: N802 (the base class's name)
        self._serve()

    def do_HEAD(self):  # noqa: N802 (the base class's name)
        self._serve()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--log")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--bytes-per-second", type=float, default=0.0)
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.root = os.path.abspath(args.root)
    server.bytes_per_second = args.bytes_per_second
    server.log_lock = threading.Lock()
    server.log_file = open(args.log, "a", encoding="utf-8") if args.log else None

    try:
        serving.run(server, args.max_seconds)
    finally:
        if server.log_file is not None:
            server.log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
