"""Stats records from the built binary, through CloudWatch Logs exports made by the real awscli.

The built coldboot runs as it would on Lambda (AWS_LAMBDA_* set, --stats without a file), so
every start prints one CloudWatch Embedded Metric Format line on stdout; each line is checked
against the EMF specification. The lines, with Lambda's START/END/REPORT lines and handler output
around them, are then served by a small local stand-in for the CloudWatch Logs API (there is no
local CloudWatch), and the Debian awscli fetches them as `aws logs filter-log-events` (JSON and
text) and `aws logs tail` would from a real account, paginating as it does there. `coldboot
stats` must give the same exact numbers for each of those exports.
"""
import http.server
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402
from cbtest import Failure, Skip, check, check_equal, check_exit  # noqa: E402

AWS = "/usr/bin/aws"  # the Debian awscli, not a pyenv shim
FUNCTION = "thumbnailer"
LOG_GROUP = "/aws/lambda/" + FUNCTION
# Two execution environments (log streams), each with its own /tmp: starts per environment.
ENVIRONMENTS = [("2026/11/22/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9", 4),
                ("2026/11/22/[$LATEST]f9e8d7c6b5a4938271605f4e3d2c1b0a", 2)]
INVOCATIONS_PER_START = 2
PAGE_SIZE = 7  # events per API page, so the export takes several requests
EMF_UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
             "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
             "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
             "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
             "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def check_emf(line, stream):
    """One EMF document, checked against the specification and our metric directive."""
    doc = json.loads(line)
    check(isinstance(doc, dict), "EMF line is not an object: %r" % line)
    aws = doc["_aws"]
    check_equal(sorted(aws), ["CloudWatchMetrics", "Timestamp"], "_aws members")
    check(isinstance(aws["Timestamp"], int) and abs(aws["Timestamp"] / 1000 - time.time()) < 600,
          "_aws.Timestamp is not epoch ms of now: %r" % aws["Timestamp"])
    directives = aws["CloudWatchMetrics"]
    check_equal(len(directives), 1, "metric directives")
    d = directives[0]
    check_equal(d["Namespace"], "coldboot", "Namespace")
    check_equal(d["Dimensions"], [["FunctionName"]], "Dimensions")
    for dimension_set in d["Dimensions"]:
        for name in dimension_set:
            check(isinstance(doc.get(name), str), "dimension %s is not a top-level string" % name)
    units = {}
    for m in d["Metrics"]:
        check_equal(sorted(m), ["Name", "Unit"], "MetricDefinition members")
        check(m["Unit"] in EMF_UNITS, "not an EMF unit: %r" % m["Unit"])
        units[m["Name"]] = m["Unit"]
        value = doc.get(m["Name"])
        check(isinstance(value, (int, float)) and not isinstance(value, bool),
              "metric %s is not a top-level number: %r" % (m["Name"], value))
    check_equal(units, {"Reuse": "Count", "Download": "Count", "ColdPathMs": "Milliseconds",
                        "DownloadBytes": "Bytes"}, "metrics")
    check_equal(doc["FunctionName"], FUNCTION, "FunctionName")
    check_equal(doc["function"], FUNCTION, "function")
    check_equal(doc["log_stream"], stream, "log_stream")
    check_equal(doc["memory_mb"], 512, "memory_mb")
    check_equal(doc["Reuse"] + doc["Download"], 1, "Reuse + Download")
    return doc


class Lambda:
    """Runs the starts of ENVIRONMENTS and keeps the log events they would have made."""

    def __init__(self):
        work = cbtest.fresh_dir("lambda")
        src = cbtest.make_layer_tree(os.path.join(work, "src"))
        self.zip = cbtest.zip_with_infozip(src, os.path.join(work, "bundle.zip"))
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.work = work
        self.events = []
        self.records = []
        request = 0
        for env_index, (stream, starts) in enumerate(ENVIRONMENTS):
            cache = os.path.join(work, "tmp-%d" % env_index, "coldboot")
            for _ in range(starts):
                env = cbtest.base_env({
                    "AWS_LAMBDA_FUNCTION_NAME": FUNCTION, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                    "AWS_LAMBDA_LOG_STREAM_NAME": stream, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "COLDBOOT_LOG": "error"})
                proc = cbtest.coldboot("--url", "file://" + self.zip, "--checksum", self.checksum,
                                       "--dir", cache, "--stats", "--", "sh", "-c",
                                       "echo handler: ready", env=env)
                check_exit(proc, 0)
                lines = proc.stdout.splitlines()
                check_equal(len(lines), 2, "stdout lines of one start: %r" % proc.stdout)
                check_equal(lines[1], "handler: ready", "the handler's line, after the record")
                doc = check_emf(lines[0], stream)
                self.records.append(doc)
                ts = doc["_aws"]["Timestamp"]
                self.add(stream, ts, lines[0] + "\n")
                self.add(stream, ts + 1, lines[1] + "\n")
                for i in range(INVOCATIONS_PER_START):
                    request += 1
                    rid = "8f5c3a1e-0000-4000-8000-%012d" % request
                    init = "Init Duration: 31.20 ms\t" if i == 0 and doc["outcome"] == "download" else ""
                    self.add(stream, ts + 2 + i, "START RequestId: %s Version: $LATEST\n" % rid)
                    self.add(stream, ts + 2 + i, "END RequestId: %s\n" % rid)
                    self.add(stream, ts + 2 + i,
                             "REPORT RequestId: %s\tDuration: 2.51 ms\tBilled Duration: 3 ms\t"
                             "Memory Size: 512 MB\tMax Memory Used: 40 MB\t%s\n" % (rid, init))

    def add(self, stream, ts, message):
        self.events.append({"logStreamName": stream, "timestamp": ts, "message": message,
                            "ingestionTime": ts + 150,
                            "eventId": "%056d" % (len(self.events) + 1)})


class LogsApi:
    """A stand-in for the CloudWatch Logs FilterLogEvents API on 127.0.0.1, paginated."""

    def __init__(self, events):
        self.events = events
        self.requests = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                body = json.loads(self.rfile.read(length) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                api.requests += 1
                if target != "Logs_20140328.FilterLogEvents" or body.get("logGroupName") != LOG_GROUP:
                    self.reply(400, {"__type": "InvalidParameterException",
                                     "message": "unexpected %s for %s" % (target, body.get("logGroupName"))})
                    return
                start = int(body.get("nextToken", "0"))
                page = {"events": api.events[start:start + PAGE_SIZE],
                        "searchedLogStreams": [{"logStreamName": s, "searchedCompletely": True}
                                               for s, _ in ENVIRONMENTS]}
                if start + PAGE_SIZE < len(api.events):
                    page["nextToken"] = str(start + PAGE_SIZE)
                self.reply(200, page)

            def reply(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def aws(self, *args):
        if not os.access(AWS, os.X_OK):
            raise Skip("the Debian awscli (%s) is not installed" % AWS)
        env = cbtest.base_env({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                               "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
                               "AWS_PAGER": "", "AWS_CONFIG_FILE": os.devnull,
                               "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                               "AWS_EC2_METADATA_DISABLED": "true"},
                              drop=("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"))
        url = "http://127.0.0.1:%d" % self.server.server_address[1]
        proc = cbtest.run([AWS, "--endpoint-url", url, "logs"] + list(args), env=env, timeout=120)
        check_exit(proc, 0, "aws logs " + args[0])
        return proc.stdout


def stats_json(*paths, input_text=None):
    proc = cbtest.run([cbtest.COLDBOOT, "stats", "--json"] + list(paths), input_text=input_text)
    check_exit(proc, 0, "coldboot stats --json")
    return json.loads(proc.stdout)


def check_report(report, what, reports=True):
    starts = sum(n for _, n in ENVIRONMENTS)
    check_equal(report["starts"], starts, what + ": starts")
    check_equal(report["containers"], len(ENVIRONMENTS), what + ": containers")
    check_equal(report["downloads"], len(ENVIRONMENTS), what + ": downloads")
    check_equal(report["reuses"], starts - len(ENVIRONMENTS), what + ": reuses")
    check_equal(report["redownload_rate"], round(len(ENVIRONMENTS) / starts, 6), what + ": rate")
    check_equal(sorted([report["container_lifetime"]["starts"]["min"],
                        report["container_lifetime"]["starts"]["max"]]),
                sorted(n for _, n in ENVIRONMENTS), what + ": lifetimes")
    if reports:
        inv = report["invocations"]
        check(inv is not None, what + ": no invocations counted")
        check_equal(inv["reports"], starts * INVOCATIONS_PER_START, what + ": REPORT lines")
        check_equal(inv["log_streams"], len(ENVIRONMENTS), what + ": log streams")
        check_equal(inv["init_reports"], len(ENVIRONMENTS), what + ": cold inits")


def test_emf_lines_and_awscli_exports():
    lam = Lambda()
    outcomes = [r["outcome"] for r in lam.records]
    check_equal(outcomes, ["download", "reuse", "reuse", "reuse", "download", "reuse"], "outcomes")

    # The raw stdout of the starts, as a log file of our own.
    raw = os.path.join(lam.work, "stdout.log")
    with open(raw, "w", encoding="utf-8") as f:
        f.writelines(e["message"] for e in lam.events)
    check_report(stats_json(raw), "raw stdout", reports=False)

    with LogsApi(lam.events) as api:
        exported = api.aws("filter-log-events", "--log-group-name", LOG_GROUP, "--output", "json")
        check(api.requests >= 2, "the export was not paginated (%d requests)" % api.requests)
        doc = json.loads(exported)
        check_equal(len(doc["events"]), len(lam.events), "events in the awscli export")
        path = os.path.join(lam.work, "export.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(exported)
        check_report(stats_json(path), "filter-log-events --output json")
        check_report(stats_json(input_text=exported), "the JSON export on stdin")

        text = api.aws("filter-log-events", "--log-group-name", LOG_GROUP, "--output", "text")
        check(text.startswith("EVENTS\t"), "unexpected --output text: %r" % text[:200])
        check_report(stats_json(input_text=text), "filter-log-events --output text")

        tail = api.aws("tail", LOG_GROUP, "--since", "1d")
        check(ENVIRONMENTS[0][0] in tail, "aws logs tail printed no stream names: %r" % tail[:300])
        check_report(stats_json(input_text=tail), "aws logs tail")

    # Everything at once: the same starts, counted once.
    report = stats_json(raw, path)
    check_report(report, "raw stdout and the export together")
    check_equal(report["input"]["duplicates"], len(lam.records), "duplicates")


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
