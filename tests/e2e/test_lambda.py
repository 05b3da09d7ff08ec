"""Lambda integration, end to end, against tests/servers/lambda_api.py (a local Runtime API and
Extensions API that plays one execution environment: init, N invokes, SHUTDOWN).

Covers `coldboot pack`, extension mode (register, pre-download, INVOKE counting, the lifetime
record, init/error and exit/error), custom-runtime mode (exec of COLDBOOT_EXEC with _HANDLER,
init/error), and the exec-wrapper form with the argument shapes of Lambda's Node, Python and
Java runtimes.
"""
import json
import os
import select
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import check, check_equal, check_exit  # noqa: E402

NET_LIBS = ("libcurl", "libzip", "libssl", "libcrypto", "coldboot-cold", "libz.so")
BAD_CHECKSUM = "xxh3:" + "0" * 32

# A custom runtime as Lambda's docs describe one: poll invocation/next, post a response.
FAKE_RUNTIME = """#!%(python)s
import http.client, json, os, sys
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
host, port = api.rsplit(":", 1)
keys = ("_HANDLER", "LAMBDA_TASK_ROOT", "COLDBOOT_BUNDLE", "PYTHONPATH", "AWS_LAMBDA_RUNTIME_API")
while True:
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        resp = conn.getresponse()
        event = json.loads(resp.read() or b"{}")
        request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    except (OSError, http.client.HTTPException, ValueError):
        sys.exit(0)  # the environment is gone
    import cbdemo  # from the bundle, through PYTHONPATH
    body = json.dumps({"argv": sys.argv, "env": {k: os.environ.get(k) for k in keys},
                       "event": event, "demo": cbdemo.VALUE})
    conn.request("POST", "/2018-06-01/runtime/invocation/%%s/response" %% request_id, body)
    conn.getresponse().read()
"""

# A stand-in for a managed runtime's interpreter: reports its argv and exits.
ARGV_REPORTER = """#!%(python)s
import json, os, sys
json.dump({"argv": sys.argv, "bundle": os.environ.get("COLDBOOT_BUNDLE"),
           "pythonpath": os.environ.get("PYTHONPATH")}, sys.stdout)
"""


# ---- the local Lambda ----


class LambdaApi:
    """tests/servers/lambda_api.py in its own process; use as a context manager."""

    def __init__(self, *options, max_seconds=60.0):
        self.options = [str(o) for o in options]
        self.max_seconds = max_seconds
        self.log_path = os.path.join(cbtest.fresh_dir("lambdalog"), "requests.jsonl")
        self.proc = None
        self.port = None

    def __enter__(self):
        script = os.path.join(cbtest.REPO, "tests", "servers", "lambda_api.py")
        self.proc = subprocess.Popen([sys.executable, script, "--log", self.log_path,
                                      "--max-seconds", str(self.max_seconds)] + self.options,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if not line.strip():
            self.stop()
            raise cbtest.Failure("the Lambda API server did not start")
        self.port = int(line)
        return self

    @property
    def api(self):
        return "127.0.0.1:%d" % self.port

    def requests(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def wait_exit(self, timeout_s=20.0):
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise cbtest.Failure("the Lambda API server did not finish its lifecycle in time")

    def stop(self):
        if self.proc is None:
            return
        cbtest.stop_process(self.proc)
        self.proc = None

    def __exit__(self, *exc):
        self.stop()
        return False


def of_path(requests, path):
    return [r for r in requests if r["path"] == path]


# ---- fixtures ----


class Bundle:
    """A small layer-style bundle packed with `coldboot pack`, and a cache root beside it."""

    def __init__(self, with_runtime=False, with_bootstrap=False):
        self.work = cbtest.fresh_dir("lambda")
        self.src = os.path.join(self.work, "src")
        cbtest.write_file(os.path.join(self.src, "python", "cbdemo", "__init__.py"), "VALUE = 42\n")
        cbtest.write_file(os.path.join(self.src, "bin", "hello"), "#!/bin/sh\necho hello\n", 0o755)
        if with_runtime:
            cbtest.write_file(os.path.join(self.src, "bin", "runtime"),
                              FAKE_RUNTIME % {"python": sys.executable}, 0o755)
        if with_bootstrap:
            cbtest.write_file(os.path.join(self.src, "bootstrap"),
                              FAKE_RUNTIME % {"python": sys.executable}, 0o755)
        self.zip = os.path.join(self.work, "bundle.zip")
        proc = cbtest.coldboot("pack", "-o", self.zip, self.src)
        check_exit(proc, 0, "coldboot pack")
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.url = "file://" + self.zip
        self.cache = os.path.join(self.work, "cache")
        self.stats = os.path.join(self.work, "stats.jsonl")
        self.bundle_dir = os.path.join(self.cache, "bundles", cbtest.digest_of(self.checksum))

    def env(self, api, **extra):
        values = {"AWS_LAMBDA_RUNTIME_API": api, "COLDBOOT_URL": self.url,
                  "COLDBOOT_CHECKSUM": self.checksum, "COLDBOOT_DIR": self.cache,
                  "AWS_LAMBDA_FUNCTION_NAME": "cbtest-function", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                  "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "LAMBDA_TASK_ROOT": self.work,
                  "_HANDLER": "handler.main"}
        values.update(extra)
        return cbtest.base_env(values)

    def records(self):
        if not os.path.exists(self.stats):
            return []
        with open(self.stats, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def install_as(self, folder, name):
        """A symlink to the binary under test at work/folder/name (argv[0] is what Lambda runs)."""
        path = os.path.join(self.work, folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(cbtest.COLDBOOT, path)
        return path


def spawn(argv, env):
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, encoding="utf-8", errors="replace")


def finish(proc, what, timeout_s=30.0):
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise cbtest.Failure("%s did not exit in time; stderr %r" % (what, err[-600:]))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def error_report(requests, path, header):
    reports = of_path(requests, path)
    check_equal(len(reports), 1, "%s requests" % path)
    report = reports[0]
    body = json.loads(report["body"])
    check_equal(report["headers"].get(header.lower()), body.get("errorType"),
                "error type header vs body")
    check(body.get("errorMessage"), "the report has no errorMessage: %r" % body)
    return body


# ---- pack ----


def test_pack_prints_paste_lines_and_is_deterministic():
    b = Bundle()
    again = os.path.join(b.work, "again.zip")
    proc = cbtest.coldboot("pack", "-o", again, b.src)
    check_exit(proc, 0, "coldboot pack")
    lines = proc.stdout.splitlines()
    check_equal(lines, ["COLDBOOT_URL=s3://YOUR-BUCKET/again.zip",
                        "COLDBOOT_CHECKSUM=" + b.checksum], "pack's output")
    with open(b.zip, "rb") as f1, open(again, "rb") as f2:
        check(f1.read() == f2.read(), "packing the same folder twice gave different bytes")
    # Without -o, the zip is named after the folder, in the current folder.
    proc = cbtest.coldboot("pack", "src/", cwd=b.work)
    check_exit(proc, 0, "coldboot pack src/")
    check(os.path.isfile(os.path.join(b.work, "src.zip")), "no src.zip")
    check("s3://YOUR-BUCKET/src.zip" in proc.stdout, "placeholder URL: %r" % proc.stdout)
    # The zip installs and runs.
    proc = cbtest.coldboot("--url", b.url, "--checksum", b.checksum, "--dir", b.cache, "--", "hello")
    check_exit(proc, 0)
    check_equal(proc.stdout, "hello\n", "the bundle's bin/hello")


def test_pack_refuses_a_symlink_that_escapes():
    b = Bundle()
    os.symlink("/usr/bin/python3", os.path.join(b.src, "bin", "python3"))
    out = os.path.join(b.work, "escape.zip")
    proc = cbtest.coldboot("pack", "-o", out, b.src)
    check_exit(proc, 3, "pack with an absolute symlink")
    check("bin/python3 -> /usr/bin/python3" in proc.stderr, "message: %r" % proc.stderr)
    check(not os.path.exists(out), "a zip was left behind")
    check_exit(cbtest.coldboot("pack"), 2, "pack without a folder")
    check_exit(cbtest.coldboot("pack", "-x", b.src), 2, "pack with an unknown option")


# ---- extension mode ----


def test_extension_downloads_counts_and_records_lifetime():
    b = Bundle()
    with LambdaApi("--invokes", 7, "--extension-name", "coldboot") as api:
        ext = b.install_as("opt/extensions", "coldboot")
        started = time.time()
        proc = finish(spawn([ext], b.env(api.api, COLDBOOT_STATS=b.stats)), "the extension")
        elapsed = time.time() - started
        check_exit(proc, 0, "the extension")
        api.wait_exit()
        requests = api.requests()
    register = of_path(requests, "/2020-01-01/extension/register")
    check_equal(len(register), 1, "register requests")
    check_equal(register[0]["headers"].get("lambda-extension-name"), "coldboot", "extension name")
    check_equal(json.loads(register[0]["body"]), {"events": ["INVOKE", "SHUTDOWN"]}, "events")
    nexts = of_path(requests, "/2020-01-01/extension/event/next")
    check_equal(len(nexts), 8, "event/next requests (7 INVOKE + SHUTDOWN)")
    ids = {r["headers"].get("lambda-extension-identifier") for r in nexts}
    check(len(ids) == 1 and None not in ids, "event/next without the registered id: %r" % ids)

    # The bundle was published during init, before the first event/next.
    marker = cbtest.read_marker(b.bundle_dir)
    check(marker["installed_at_ms"] / 1000.0 <= nexts[0]["t"] + 0.001,
          "the bundle was installed after the first event/next")

    records = b.records()
    check_equal(len(records), 1, "stats records")
    rec = records[0]
    with open(os.path.join(b.cache, "container.json"), encoding="utf-8") as f:
        container = json.load(f)
    check_equal(rec["outcome"], "shutdown", "outcome")
    check_equal(rec["invocations"], 7, "invocations")
    check_equal(rec["shutdown_reason"], "spindown", "shutdown_reason")
    check_equal(rec["container"], container["id"], "container id")
    check_equal((rec["starts"], rec["downloads"]), (1, 1), "starts and downloads")
    check(0 < rec["alive_s"] <= elapsed + 0.5, "alive_s %r, process ran %.3f s" % (rec["alive_s"], elapsed))
    check_equal((rec["function"], rec["memory_mb"]), ("cbtest-function", 512), "Lambda fields")


def test_extension_emf_on_stdout_and_other_reasons():
    b = Bundle()
    with LambdaApi("--invokes", 3, "--shutdown-reason", "timeout", "--chunked") as api:
        ext = b.install_as("opt/extensions", "coldboot")
        proc = finish(spawn([ext], b.env(api.api, COLDBOOT_STATS="1", COLDBOOT_URL=None)),
                      "the extension")
        check_exit(proc, 0, "the extension")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    check_equal(len(lines), 1, "EMF lines on stdout")
    doc = json.loads(lines[0])
    metrics = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    check_equal(metrics, ["Invocations", "AliveSeconds"], "EMF metrics")
    check_equal((doc["Invocations"], doc["invocations"], doc["shutdown_reason"]), (3, 3, "timeout"),
                "EMF values")
    check_equal(doc["FunctionName"], "cbtest-function", "dimension")
    # Without COLDBOOT_URL nothing was downloaded, and no start was counted here.
    check_equal(doc["container"], None, "container without any start")


def test_extension_is_passive_without_stats():
    b = Bundle()
    with LambdaApi("--invokes", 4) as api:
        ext = b.install_as("opt/extensions", "coldboot")
        proc = finish(spawn([ext], b.env(api.api, COLDBOOT_URL=None)), "the extension")
        check_exit(proc, 0, "the extension")
        api.wait_exit()
        requests = api.requests()
    register = of_path(requests, "/2020-01-01/extension/register")
    check_equal(json.loads(register[0]["body"]), {"events": ["SHUTDOWN"]}, "events without stats")
    check_equal(len(of_path(requests, "/2020-01-01/extension/event/next")), 1, "event/next calls")
    check_equal(proc.stdout, "", "stdout without stats")
    check(not os.path.exists(b.cache), "the cache was touched without COLDBOOT_URL")


def test_extension_survives_dropped_connections():
    b = Bundle()
    with LambdaApi("--invokes", 20, "--drop-after-event") as api:
        ext = b.install_as("opt/extensions", "coldboot")
        proc = finish(spawn([ext], b.env(api.api, COLDBOOT_STATS=b.stats, COLDBOOT_URL=None)),
                      "the extension")
        check_exit(proc, 0, "the extension")
    check_equal(b.records()[0]["invocations"], 20, "invocations over reopened connections")


def test_extension_init_error_on_bad_checksum():
    b = Bundle()
    with LambdaApi("--invokes", 2) as api:
        ext = b.install_as("opt/extensions", "coldboot")
        proc = finish(spawn([ext], b.env(api.api, COLDBOOT_CHECKSUM=BAD_CHECKSUM,
                                         COLDBOOT_STATS=b.stats)), "the extension")
        check_exit(proc, 5, "the extension with a wrong checksum")
        api.wait_exit()
        requests = api.requests()
    body = error_report(requests, "/2020-01-01/extension/init/error",
                        "Lambda-Extension-Function-Error-Type")
    check_equal(body["errorType"], "Coldboot.Checksum", "error type")
    check("checksum" in body["errorMessage"].lower(), "message: %r" % body["errorMessage"])
    check_equal(of_path(requests, "/2020-01-01/extension/event/next"), [], "event/next after init/error")
    check(not os.path.exists(b.bundle_dir), "a bundle was published")


def test_extension_exit_error_when_next_fails():
    b = Bundle()
    with LambdaApi("--invokes", 5, "--fail-next-after", 2) as api:
        ext = b.install_as("opt/extensions", "coldboot")
        proc = finish(spawn([ext], b.env(api.api, COLDBOOT_STATS=b.stats, COLDBOOT_URL=None)),
                      "the extension")
        check(proc.returncode not in (0, None), "the extension exited 0 after event/next failed")
        requests = api.requests()
    body = error_report(requests, "/2020-01-01/extension/exit/error",
                        "Lambda-Extension-Function-Error-Type")
    check_equal(body["errorType"], "Coldboot.IO", "error type")
    check("HTTP 500" in body["errorMessage"], "message: %r" % body["errorMessage"])
    check_equal(b.records(), [], "a lifetime record after a failure")


def test_extension_subcommand_and_name_override():
    b = Bundle()
    with LambdaApi("--invokes", 1, "--extension-name", "cb-ext") as api:
        proc = finish(spawn([cbtest.COLDBOOT, "extension"],
                            b.env(api.api, COLDBOOT_URL=None, COLDBOOT_EXTENSION_NAME="cb-ext")),
                      "coldboot extension")
        check_exit(proc, 0, "coldboot extension")
    # A name that is not the file's is refused by Lambda; coldboot says what to do.
    with LambdaApi("--invokes", 1, "--extension-name", "cb-ext") as api:
        proc = finish(spawn([cbtest.COLDBOOT, "extension"], b.env(api.api, COLDBOOT_URL=None)),
                      "coldboot extension")
        check_exit(proc, 3, "register under the wrong name")
        check("COLDBOOT_EXTENSION_NAME" in proc.stderr, "message: %r" % proc.stderr)


# ---- custom-runtime mode ----


def test_runtime_execs_coldboot_exec_with_handler():
    b = Bundle(with_runtime=True)
    with LambdaApi("--runtime", "--extensions", 0, "--invokes", 3) as api:
        bootstrap = b.install_as("var/task", "bootstrap")
        runtime = spawn([bootstrap], b.env(api.api, COLDBOOT_EXEC="bin/runtime"))
        api.wait_exit()
        proc = finish(runtime, "the custom runtime")
        check_exit(proc, 0, "the custom runtime")
        requests = api.requests()
    responses = [r for r in requests if r["path"].endswith("/response")]
    check_equal(len(responses), 3, "invocation responses")
    first = json.loads(responses[0]["body"])
    check_equal(first["argv"][0], os.path.join(b.bundle_dir, "bin", "runtime"), "exec'd program")
    check_equal(first["env"]["_HANDLER"], "handler.main", "_HANDLER passed through")
    check_equal(first["env"]["LAMBDA_TASK_ROOT"], b.work, "LAMBDA_TASK_ROOT passed through")
    check_equal(first["env"]["COLDBOOT_BUNDLE"], b.bundle_dir, "COLDBOOT_BUNDLE")
    check_equal(first["demo"], 42, "the bundle's python package")
    check_equal([json.loads(r["body"])["event"]["n"] for r in responses], [1, 2, 3], "events")
    check_equal(of_path(requests, "/2018-06-01/runtime/init/error"), [], "init errors")


def test_runtime_uses_the_bundles_bootstrap_and_the_task_root():
    b = Bundle(with_bootstrap=True)
    with LambdaApi("--runtime", "--extensions", 0, "--invokes", 1) as api:
        runtime = spawn([b.install_as("opt", "bootstrap")], b.env(api.api))
        api.wait_exit()
        check_exit(finish(runtime, "the custom runtime"), 0, "bootstrap from the bundle")
        response = [r for r in api.requests() if r["path"].endswith("/response")]
    check_equal(json.loads(response[0]["body"])["argv"][0], os.path.join(b.bundle_dir, "bootstrap"),
                "the bundle's bootstrap")
    # COLDBOOT_EXEC relative to LAMBDA_TASK_ROOT, with extra words; plain `coldboot` with no arguments.
    cbtest.write_file(os.path.join(b.work, "my-runtime"), ARGV_REPORTER % {"python": sys.executable},
                      0o755)
    proc = cbtest.coldboot(env=b.env("127.0.0.1:9", COLDBOOT_EXEC="my-runtime --flag value"))
    check_exit(proc, 0, "coldboot with COLDBOOT_EXEC and no arguments")
    report = json.loads(proc.stdout)
    check_equal(report["argv"], [os.path.join(b.work, "my-runtime"), "--flag", "value"], "argv")


def test_runtime_init_error_on_bad_checksum_and_missing_program():
    b = Bundle(with_runtime=True)
    with LambdaApi("--runtime", "--extensions", 0, "--invokes", 1) as api:
        bootstrap = b.install_as("var/task", "bootstrap")
        proc = finish(spawn([bootstrap], b.env(api.api, COLDBOOT_EXEC="bin/runtime",
                                               COLDBOOT_CHECKSUM=BAD_CHECKSUM)), "bootstrap")
        check_exit(proc, 5, "bootstrap with a wrong checksum")
        api.wait_exit()
        requests = api.requests()
    body = error_report(requests, "/2018-06-01/runtime/init/error",
                        "Lambda-Runtime-Function-Error-Type")
    check_equal(body["errorType"], "Coldboot.Checksum", "error type")
    check_equal(of_path(requests, "/2018-06-01/runtime/invocation/next"), [], "invocation/next calls")

    with LambdaApi("--runtime", "--extensions", 0, "--invokes", 1) as api:
        proc = finish(spawn([bootstrap], b.env(api.api, COLDBOOT_EXEC="no-such-runtime")), "bootstrap")
        check_exit(proc, 127, "bootstrap with a missing program")
        api.wait_exit()
        body = error_report(api.requests(), "/2018-06-01/runtime/init/error",
                            "Lambda-Runtime-Function-Error-Type")
    check_equal(body["errorType"], "Coldboot.NotFound", "error type")
    check("no-such-runtime" in body["errorMessage"], "message: %r" % body["errorMessage"])


def test_runtime_and_extension_share_one_download():
    """The full environment: the extension pre-downloads while the runtime waits on the lock."""
    b = Bundle(with_runtime=True)
    with LambdaApi("--runtime", "--extensions", 1, "--invokes", 4) as api:
        env = b.env(api.api, COLDBOOT_EXEC="bin/runtime", COLDBOOT_STATS=b.stats)
        ext = spawn([b.install_as("opt/extensions", "coldboot")], env)
        runtime = spawn([b.install_as("var/task", "bootstrap")], env)
        api.wait_exit()
        check_exit(finish(ext, "the extension"), 0, "the extension")
        check_exit(finish(runtime, "the runtime"), 0, "the runtime")
        requests = api.requests()
    check_equal(len([r for r in requests if r["path"].endswith("/response")]), 4, "responses")
    records = b.records()
    starts = [r for r in records if r["outcome"] != "shutdown"]
    lifetime = [r for r in records if r["outcome"] == "shutdown"]
    check_equal(len(lifetime), 1, "lifetime records")
    check_equal(lifetime[0]["invocations"], 4, "invocations")
    check_equal(lifetime[0]["downloads"], 1, "downloads in this container")
    check_equal(sorted(r["outcome"] for r in starts) in (["download"], ["waited"], ["reuse"]), True,
                "start records of the runtime: %r" % starts)


def test_runtime_warm_start_loads_no_download_code():
    if not cbtest.strace_available():
        raise cbtest.Skip("strace does not work here")
    b = Bundle()
    bootstrap = b.install_as("var/task", "bootstrap")
    env = b.env("127.0.0.1:9", COLDBOOT_EXEC="true")
    check_exit(cbtest.run([bootstrap], env=env), 0, "cold start")
    trace = os.path.join(b.work, "trace.txt")
    check_exit(cbtest.run(["strace", "-f", "-o", trace, "-e", "trace=openat,open", bootstrap], env=env),
               0, "warm start under strace")
    with open(trace, encoding="utf-8", errors="replace") as f:
        opened = [line for line in f if any(lib in line for lib in NET_LIBS)]
    check_equal(opened, [], "libraries a warm start opened")


# ---- the exec-wrapper form (AWS_LAMBDA_EXEC_WRAPPER=/opt/bin/coldboot) ----

RUNTIME_SHAPES = {
    "node": ["var/lang/bin/node", "--expose-gc", "--max-http-header-size", "81920",
             "/var/runtime/index.mjs"],
    "python": ["var/lang/bin/python3.12", "-u", "/var/runtime/bootstrap.py"],
    "java": ["var/lang/bin/java", "-XX:MaxHeapSize=445645k",
             "-javaagent:/var/runtime/lib/Log4jHotPatchFat.jar", "-XX:+UseSerialGC", "-Xshare:on",
             "-XX:SharedArchiveFile=/var/lang/lib/server/runtime.jsa", "-cp",
             "/var/runtime/lib/aws-lambda-java-core-1.2.3.jar:/var/runtime/lib/*",
             "com.amazonaws.services.lambda.runtime.api.client.AWSLambda"],
    # Arguments that look like coldboot's own options belong to the runtime, after its path.
    "lookalike": ["var/lang/bin/node", "--url", "x", "-v", "--", "-q", "--help"],
}


def test_exec_wrapper_passes_runtime_argv_untouched():
    b = Bundle()
    for name, shape in RUNTIME_SHAPES.items():
        program = os.path.join(b.work, shape[0])
        if not os.path.exists(program):
            cbtest.write_file(program, ARGV_REPORTER % {"python": sys.executable}, 0o755)
        argv = [program] + shape[1:]
        env = b.env("127.0.0.1:9", AWS_LAMBDA_EXEC_WRAPPER=cbtest.COLDBOOT,
                    COLDBOOT_EXEC="ignored-in-wrapper-form")
        proc = cbtest.coldboot(*argv, env=env)
        check_exit(proc, 0, "wrapper in front of %s" % name)
        report = json.loads(proc.stdout)
        check_equal(report["argv"], argv, "%s argv" % name)
        check_equal(report["bundle"], b.bundle_dir, "%s COLDBOOT_BUNDLE" % name)
        check(report["pythonpath"].startswith(os.path.join(b.bundle_dir, "python")),
              "%s PYTHONPATH %r" % (name, report["pythonpath"]))


def test_exec_wrapper_reports_init_error():
    b = Bundle()
    program = os.path.join(b.work, RUNTIME_SHAPES["python"][0])
    cbtest.write_file(program, ARGV_REPORTER % {"python": sys.executable}, 0o755)
    with LambdaApi("--runtime", "--extensions", 0, "--invokes", 1) as api:
        env = b.env(api.api, AWS_LAMBDA_EXEC_WRAPPER=cbtest.COLDBOOT, COLDBOOT_URL="file:///nonexistent.zip")
        proc = cbtest.coldboot(program, *RUNTIME_SHAPES["python"][1:], env=env)
        check_exit(proc, 4, "wrapper with a missing bundle")
        check_equal(proc.stdout, "", "the runtime ran")
        api.wait_exit()
        body = error_report(api.requests(), "/2018-06-01/runtime/init/error",
                            "Lambda-Runtime-Function-Error-Type")
    check_equal(body["errorType"], "Coldboot.Download", "error type")
    # Outside Lambda (no AWS_LAMBDA_RUNTIME_API) nothing is posted; the exit code is the same.
    env = b.env("", COLDBOOT_URL="file:///nonexistent.zip", AWS_LAMBDA_RUNTIME_API=None)
    check_exit(cbtest.coldboot(program, env=env), 4, "plain wrapper with a missing bundle")


# ---- the examples under examples/lambda/ ----

EXAMPLES = os.path.join(cbtest.REPO, "examples", "lambda")


def pack_example(src, work, name):
    out = os.path.join(work, name + ".zip")
    proc = cbtest.coldboot("pack", "-o", out, src)
    check_exit(proc, 0, "coldboot pack %s" % src)
    return "file://" + out, proc.stdout.split("COLDBOOT_CHECKSUM=")[1].strip()


def test_example_c_handler_as_custom_runtime():
    if shutil.which("cc") is None:
        raise cbtest.Skip("no C compiler")
    work = cbtest.fresh_dir("example-c")
    bundle = os.path.join(work, "bundle")
    shutil.copytree(os.path.join(EXAMPLES, "c", "bundle"), bundle)
    os.makedirs(os.path.join(bundle, "bin"))
    proc = cbtest.run(["cc", "-O2", "-o", os.path.join(bundle, "bin", "handler"),
                       os.path.join(EXAMPLES, "c", "handler.c")])
    check_exit(proc, 0, "cc handler.c")
    url, checksum = pack_example(bundle, work, "c-deps")
    bootstrap = os.path.join(work, "opt", "bootstrap")
    os.makedirs(os.path.dirname(bootstrap))
    os.symlink(cbtest.COLDBOOT, bootstrap)
    with LambdaApi("--runtime", "--extensions", 0, "--invokes", 2) as api:
        env = cbtest.base_env({"AWS_LAMBDA_RUNTIME_API": api.api, "COLDBOOT_URL": url,
                               "COLDBOOT_CHECKSUM": checksum, "COLDBOOT_EXEC": "bin/handler",
                               "COLDBOOT_DIR": os.path.join(work, "cache"), "_HANDLER": "handler.main"})
        runtime = spawn([bootstrap], env)
        api.wait_exit()
        runtime.kill()  # Lambda ends the runtime at shutdown; it is blocked in invocation/next
        finish(runtime, "the C runtime")
        responses = [json.loads(r["body"]) for r in api.requests() if r["path"].endswith("/response")]
    check_equal(len(responses), 2, "responses from the C handler")
    check_equal((responses[0]["handler"], responses[0]["language"]), ("handler.main", "c"), "response")
    check_equal([r["event"]["n"] for r in responses], [1, 2], "events echoed")
    check(os.path.isfile(os.path.join(responses[0]["bundle"], "share", "greeting.txt")),
          "the bundle named in the response has no share/greeting.txt")


def test_example_python_and_node_handlers_import_from_the_bundle():
    work = cbtest.fresh_dir("example-py")
    url, checksum = pack_example(os.path.join(EXAMPLES, "python", "bundle"), work, "python-deps")
    env = cbtest.base_env({"COLDBOOT_URL": url, "COLDBOOT_CHECKSUM": checksum,
                           "COLDBOOT_DIR": os.path.join(work, "cache"), "PYTHONDONTWRITEBYTECODE": "1"})
    code = "import json, handler; print(json.dumps(handler.main({'name': 'py'}, None)))"
    proc = cbtest.run([cbtest.COLDBOOT, sys.executable, "-c", code], env=env,
                      cwd=os.path.join(EXAMPLES, "python", "function"))
    check_exit(proc, 0, "the Python example")
    result = json.loads(proc.stdout)
    check_equal(result["greeting"], "hello, py, from a coldboot bundle", "Python greeting")

    if shutil.which("node") is None:
        raise cbtest.Skip("node is not installed")
    url, checksum = pack_example(os.path.join(EXAMPLES, "node", "bundle"), work, "node-deps")
    env.update({"COLDBOOT_URL": url, "COLDBOOT_CHECKSUM": checksum})
    code = ("require('./index.js').handler({name: 'js'}, {awsRequestId: 'r1'})"
            ".then((r) => console.log(JSON.stringify(r)))")
    proc = cbtest.run([cbtest.COLDBOOT, "node", "-e", code], env=env,
                      cwd=os.path.join(EXAMPLES, "node", "function"))
    check_exit(proc, 0, "the Node example")
    result = json.loads(proc.stdout)
    check_equal((result["greeting"], result["requestId"]), ("hello, js, from a coldboot bundle", "r1"),
                "Node result")


if __name__ == "__main__":
    sys.exit(cbtest.main(globals()))
