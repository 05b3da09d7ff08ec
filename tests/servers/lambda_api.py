#!/usr/bin/env python3
"""A local stand-in for Lambda's Runtime API and Extensions API, bound to 127.0.0.1.

    lambda_api.py [--invokes N] [--extensions K] [--runtime] [--shutdown-reason R]
                  [--extension-name NAME] [--chunked] [--drop-after-event] [--fail-next-after N]
                  [--log FILE] [--max-seconds S]

It picks a free port and prints it on the first line of stdout (use it as
AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT), then plays Lambda for one execution
environment, following the AWS documentation of both APIs:

  init      waits until K extensions have registered and each is waiting in
            event/next, and (with --runtime) the runtime is waiting in
            invocation/next;
  invoke    N times: sends an INVOKE event to every extension registered for
            INVOKE and (with --runtime) the invocation to the runtime, then
            waits until the runtime posted its response and every extension
            is back in event/next;
  shutdown  sends SHUTDOWN (with --shutdown-reason, default "spindown") to
            every extension registered for it, then exits after a short grace
            period.

An init/error (from the runtime or an extension) ends the environment, as it
does on Lambda: no event is sent after it. Endpoints:

  POST /2020-01-01/extension/register      Lambda-Extension-Name; {"events": [...]}
  GET  /2020-01-01/extension/event/next    Lambda-Extension-Identifier
  POST /2020-01-01/extension/init/error    Lambda-Extension-Identifier, -Function-Error-Type
  POST /2020-01-01/extension/exit/error    idem
  GET  /2018-06-01/runtime/invocation/next
  POST /2018-06-01/runtime/invocation/ID/response, .../ID/error
  POST /2018-06-01/runtime/init/error      Lambda-Runtime-Function-Error-Type

Every request is appended to --log as one JSON line just before its answer is sent:
{"seq", "method", "path", "headers" (lower-case names), "body", "status"}.
--chunked sends event bodies with chunked transfer encoding; --drop-after-event
closes the connection after every event/next answer without saying so (the
client must reconnect); --fail-next-after N answers an extension's event/next
calls after the Nth with HTTP 500. The server exits by itself after --max-seconds
(default 120), or on SIGTERM/SIGINT.
"""
import argparse
import http.server
import json
import signal
import socket
import sys
import threading
import time
import uuid

SHUTDOWN_GRACE_S = 2.0


class Environment:
    """The state of one execution environment, shared by the handler threads and the driver."""

    def __init__(self, args):
        self.args = args
        self.cond = threading.Condition()
        self.extensions = {}  # id -> {"name", "events", "queue", "waiting"}
        self.runtime_queue = []
        self.runtime_waiting = False
        self.responses = set()  # request ids the runtime answered
        self.phase = "init"  # init, invoke, shutdown, failed, done
        self.server_closing = False
        self.seq = 0
        self.log_lock = threading.Lock()
        self.log_file = open(args.log, "a", encoding="utf-8") if args.log else None

    def log(self, method, path, headers, body, status):
        with self.log_lock:
            self.seq += 1
            if self.log_file is not None:
                entry = {"seq": self.seq, "method": method, "path": path,
                         "headers": {k.lower(): v for k, v in headers.items()},
                         "body": body, "status": status, "t": time.time()}
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()

    def fail(self):
        with self.cond:
            if self.phase not in ("done",):
                self.phase = "failed"
            self.cond.notify_all()

    def wait_for(self, predicate, deadline):
        """Waits (holding cond) until predicate() or the deadline; returns predicate()."""
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.phase in ("failed", "done") or self.server_closing:
                return predicate()
            self.cond.wait(min(left, 0.5))
        return True

    def _all_idle(self):
        return all(e["waiting"] and not e["queue"] for e in self.extensions.values())

    def drive(self, deadline):
        """Plays the lifecycle: init, N invokes, shutdown."""
        args = self.args
        with self.cond:
            ready = self.wait_for(
                lambda: len(self.extensions) >= args.extensions and self._all_idle()
                and (not args.runtime or self.runtime_waiting), deadline)
            if not ready or self.phase == "failed":
                return
            self.phase = "invoke"
            for i in range(args.invokes):
                request_id = "req-%04d-%s" % (i + 1, uuid.uuid4().hex[:8])
                deadline_ms = int(time.time() * 1000) + 3000
                event = {"eventType": "INVOKE", "deadlineMs": deadline_ms, "requestId": request_id,
                         "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:%s"
                         % args.function_name,
                         "tracing": {"type": "X-Amzn-Trace-Id",
                                     "value": "Root=1-00000000-%024x;Sampled=0" % (i + 1)}}
                for ext in self.extensions.values():
                    if "INVOKE" in ext["events"]:
                        ext["queue"].append(event)
                if args.runtime:
                    self.runtime_queue.append((request_id, deadline_ms, {"n": i + 1}))
                self.cond.notify_all()
                done = self.wait_for(
                    lambda: self._all_idle() and (not args.runtime or request_id in self.responses),
                    deadline)
                if not done or self.phase == "failed":
                    return
            self.phase = "shutdown"
            event = {"eventType": "SHUTDOWN", "shutdownReason": args.shutdown_reason,
                     "deadlineMs": int(time.time() * 1000) + 2000}
            for ext in self.extensions.values():
                if "SHUTDOWN" in ext["events"]:
                    ext["queue"].append(event)
            self.cond.notify_all()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "cbtest-lambda/1"
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle holds the body back
        # until the client's delayed ACK (40 ms a request). Lambda's own server sets it too.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    @property
    def env(self):
        return self.server.env

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace") if length else ""

    def _answer(self, status, obj, body_in="", headers=(), chunked=False, drop=False):
        data = json.dumps(obj).encode()
        # Logged before the answer goes out: a client that exits on it must find it logged.
        self.env.log(self.command, self.path, dict(self.headers.items()), body_in, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(data) // 2
            for part in (data[:half], data[half:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        self.wfile.flush()
        if drop:
            # Close without "Connection: close": the client finds out on its next request.
            self.close_connection = True

    def _error(self, status, error_type, message, body_in=""):
        self._answer(status, {"errorMessage": message, "errorType": error_type}, body_in)

    # ---- Extensions API ----

    def _register(self, body):
        env = self.env
        name = self.headers.get("Lambda-Extension-Name")
        try:
            events = json.loads(body or "{}").get("events", [])
        except ValueError:
            return self._error(400, "InvalidRequestFormat", "body is not JSON", body)
        if not name:
            return self._error(400, "InvalidRequestFormat", "Lambda-Extension-Name is missing", body)
        if env.args.extension_name and name != env.args.extension_name:
            return self._error(403, "Extension.InvalidExtensionName",
                               "no extension file named %r" % name, body)
        if not isinstance(events, list) or any(e not in ("INVOKE", "SHUTDOWN") for e in events):
            return self._error(400, "InvalidRequestFormat", "unknown events %r" % events, body)
        with env.cond:
            if env.phase != "init":
                return self._error(403, "Extension.InvalidRegistration",
                                   "registration is only open during init", body)
            ext_id = str(uuid.uuid4())
            env.extensions[ext_id] = {"name": name, "events": set(events), "queue": [],
                                      "waiting": False}
            env.cond.notify_all()
        self._answer(200, {"functionName": env.args.function_name, "functionVersion": "$LATEST",
                           "handler": "handler.main"}, body,
                     headers=[("Lambda-Extension-Identifier", ext_id)])

    def _extension(self, body_in):
        ext_id = self.headers.get("Lambda-Extension-Identifier")
        ext = self.env.extensions.get(ext_id) if ext_id else None
        if ext is None:
            self._error(403, "Extension.InvalidExtensionIdentifier", "unknown extension id", body_in)
        return ext

    def _event_next(self):
        env = self.env
        ext = self._extension("")
        if ext is None:
            return
        with env.cond:
            ext["nexts"] = ext.get("nexts", 0) + 1
            if env.args.fail_next_after is not None and ext["nexts"] > env.args.fail_next_after:
                fail = True
            else:
                fail = False
                ext["waiting"] = True
                env.cond.notify_all()
        if fail:
            return self._error(500, "ServiceException", "event/next failed on purpose")
        with env.cond:
            while not ext["queue"]:
                if env.server_closing:
                    return
                env.cond.wait(0.5)
            event = ext["queue"].pop(0)
            ext["waiting"] = False
            env.cond.notify_all()
        self._answer(200, event, headers=[("Lambda-Extension-Event-Identifier", str(uuid.uuid4()))],
                     chunked=env.args.chunked, drop=env.args.drop_after_event)

    def _extension_error(self, body, init):
        ext = self._extension(body)
        if ext is None:
            return
        if not self.headers.get("Lambda-Extension-Function-Error-Type"):
            return self._error(400, "InvalidRequestFormat",
                               "Lambda-Extension-Function-Error-Type is missing", body)
        self._answer(202, {"status": "OK"}, body)
        if init:
            self.env.fail()

    # ---- Runtime API ----

    def _invocation_next(self):
        env = self.env
        with env.cond:
            env.runtime_waiting = True
            env.cond.notify_all()
            while not env.runtime_queue:
                if env.server_closing:
                    return
                env.cond.wait(0.5)
            request_id, deadline_ms, payload = env.runtime_queue.pop(0)
            env.runtime_waiting = False
        self._answer(200, payload, headers=[
            ("Lambda-Runtime-Aws-Request-Id", request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn",
             "arn:aws:lambda:us-east-1:123456789012:function:%s" % env.args.function_name),
            ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")])

    def _invocation_result(self, request_id, body):
        env = self.env
        self._answer(202, {"status": "OK"}, body)
        with env.cond:
            env.responses.add(request_id)
            env.cond.notify_all()

    def do_GET(self):  # noqa: N802 (the base class's name)
        if self.path == "/2020-01-01/extension/event/next":
            return self._event_next()
        if self.path == "/2018-06-01/runtime/invocation/next":
            return self._invocation_next()
        self._error(404, "NotFound", "no such endpoint")

    def do_POST(self):  # noqa: N802 (the base class's name)
        body = self._body()
        path = self.path
        if path == "/2020-01-01/extension/register":
            return self._register(body)
        if path == "/2020-01-01/extension/init/error":
            return self._extension_error(body, init=True)
        if path == "/2020-01-01/extension/exit/error":
            return self._extension_error(body, init=False)
        if path == "/2018-06-01/runtime/init/error":
            if not self.headers.get("Lambda-Runtime-Function-Error-Type"):
                return self._error(400, "InvalidRequestFormat",
                                   "Lambda-Runtime-Function-Error-Type is missing", body)
            self._answer(202, {"status": "OK"}, body)
            return self.env.fail()
        parts = path.split("/")
        if (len(parts) == 6 and parts[1:4] == ["2018-06-01", "runtime", "invocation"]
                and parts[5] in ("response", "error")):
            return self._invocation_result(parts[4], body)
        self._error(404, "NotFound", "no such endpoint", body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invokes", type=int, default=3)
    parser.add_argument("--extensions", type=int, default=1)
    parser.add_argument("--runtime", action="store_true", help="a runtime takes part")
    parser.add_argument("--shutdown-reason", default="spindown")
    parser.add_argument("--extension-name", help="the only name register accepts")
    parser.add_argument("--function-name", default="cbtest-function")
    parser.add_argument("--chunked", action="store_true")
    parser.add_argument("--drop-after-event", action="store_true")
    parser.add_argument("--fail-next-after", type=int,
                        help="answer each extension's event/next with HTTP 500 after this many")
    parser.add_argument("--log")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()

    env = Environment(args)
    server = Server(("127.0.0.1", 0), Handler)
    server.env = env
    started = time.monotonic()
    deadline = started + args.max_seconds

    def stop(*_):
        with env.cond:
            env.server_closing = True
            env.cond.notify_all()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                               daemon=True)
    serving.start()
    print(server.server_address[1], flush=True)

    env.drive(deadline)
    # Give the extensions time to act on SHUTDOWN (or report errors), then stop.
    end = min(deadline, time.monotonic() + SHUTDOWN_GRACE_S)
    with env.cond:
        if env.phase == "shutdown":
            env.phase = "done"
        while time.monotonic() < end and not env.server_closing:
            env.cond.wait(0.2)
    stop()
    serving.join(timeout=5)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
