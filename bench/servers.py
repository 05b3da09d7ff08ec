"""Local servers for the benchmark: nginx (or a Python fallback) and the verifying S3 peer.

Every server binds 127.0.0.1 only, has a bounded lifetime (nginx under coreutils `timeout`,
s3rver with its own --max-seconds) and is stopped by stop_all(), which run.py calls from its
exit handlers.
"""
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AWS = "/usr/bin/aws"  # Debian's awscli, not a pyenv shim
S3_KEY_ID = "coldbootbench"
S3_SECRET = "coldboot-bench-secret-key"
S3_REGION = "us-east-1"
S3_BUCKET = "bench"

_procs = []


def _track(proc):
    _procs.append(proc)
    return proc


# The session (= the tracked pid) of each kind of server started: "http", "s3".
sessions = {}


def session_cpu_s(sid):
    """User + system CPU seconds so far of every process in session sid (a server and its
    children: the servers are started with start_new_session, so sid is the tracked pid)."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "(comm)": state ppid pgrp session ... utime(12) stime(13)
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / hz


def stop_all():
    """Stops every server this module started (by process group), newest first."""
    while _procs:
        proc = _procs.pop()
        if proc.poll() is not None:
            continue
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_port(proc, what, deadline_s=30.0):
    """The first stdout line of a server that prints its port."""
    end = time.monotonic() + deadline_s
    buf = b""
    while time.monotonic() < end:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            chunk = os.read(proc.stdout.fileno(), 256)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return int(buf.split(b"\n", 1)[0])
        if proc.poll() is not None:
            break
    raise RuntimeError("%s did not report its port (exit %s)" % (what, proc.poll()))


def _wait_http(url, deadline_s=20.0):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            req = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code  # it answers: that is all this waits for
        except Exception as e:  # noqa: BLE001 (any failure means "not yet")
            last = e
            time.sleep(0.1)
    raise RuntimeError("no answer from %s: %s" % (url, last))


def start_http(root, work_dir, max_seconds, log):
    """A plain range-capable HTTP server for root. Returns (base_url, kind)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    timeout_bin = shutil.which("timeout")
    if nginx and timeout_bin:
        prefix = os.path.join(work_dir, "nginx")
        os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
        port = free_port()
        conf = os.path.join(prefix, "nginx.conf")
        t = os.path.join(prefix, "tmp")
        with open(conf, "w") as f:
            f.write("""# bench-only: one process, foreground, loopback only
daemon off;
master_process off;
worker_processes 1;
pid %(p)s/nginx.pid;
error_log %(p)s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 10;
    client_body_temp_path %(t)s/body;
    proxy_temp_path %(t)s/proxy;
    fastcgi_temp_path %(t)s/fastcgi;
    uwsgi_temp_path %(t)s/uwsgi;
    scgi_temp_path %(t)s/scgi;
    types { application/zip zip; }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
        location / { }
        # The same files at 100 MB/s per connection, about what one S3 GET gives a Lambda
        # function: a download that takes as long as the unpacking, to see them overlap.
        location /paced/ { alias %(root)s/; limit_rate 100m; }
    }
}
""" % {"p": prefix, "t": t, "port": port, "root": os.path.abspath(root)})
        proc = _track(subprocess.Popen(
            [timeout_bin, "--signal=TERM", str(int(max_seconds)), nginx, "-p", prefix, "-c", conf,
             "-e", os.path.join(prefix, "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        sessions["http"] = proc.pid
        base = "http://127.0.0.1:%d" % port
        try:
            _wait_http(base + "/")
        except RuntimeError:
            stop_all()
            err = ""
            try:
                with open(os.path.join(prefix, "error.log")) as f:
                    err = f.read()[-500:]
            except OSError:
                pass
            raise RuntimeError("nginx did not start: %s" % err)
        return base, "nginx %s" % _nginx_version(nginx)
    log("nginx is not installed (apt-get install nginx-light): FALLING BACK to a Python server, "
        "which is far slower; the download-bound numbers below are the Python server's")
    static = os.path.join(REPO, "tests", "servers", "static_server.py")
    if os.path.exists(static):
        proc = _track(subprocess.Popen(
            [sys.executable, static, "--root", root, "--max-seconds", str(int(max_seconds))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True))
        port = _read_port(proc, "static_server.py")
        kind = "python static_server.py (fallback: nginx missing)"
    else:
        port = free_port()
        proc = _track(subprocess.Popen(
            ["timeout", str(int(max_seconds)), sys.executable, "-m", "http.server", "--bind",
             "127.0.0.1", "--directory", root, str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        kind = "python http.server (fallback: nginx missing)"
    sessions["http"] = proc.pid
    base = "http://127.0.0.1:%d" % port
    _wait_http(base + "/")
    return base, kind


def _nginx_version(nginx):
    r = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    return (r.stderr or r.stdout).strip().split("/")[-1]


def start_s3(data_dir, max_seconds):
    """@20minutes/s3rver with a bench key pair and bucket. Returns (endpoint, kind)."""
    script = os.path.join(REPO, "tests", "servers", "s3rver.js")
    if os.path.exists(script):
        argv = ["node", script, "--dir", data_dir, "--key", "%s:%s" % (S3_KEY_ID, S3_SECRET),
                "--bucket", S3_BUCKET, "--max-seconds", str(int(max_seconds))]
        kind = "@20minutes/s3rver via tests/servers/s3rver.js"
    else:
        argv = ["node", os.path.join(REPO, "bench", "s3rver_min.js"), data_dir,
                "%s:%s" % (S3_KEY_ID, S3_SECRET), S3_BUCKET, str(int(max_seconds))]
        kind = "@20minutes/s3rver via bench/s3rver_min.js"
    proc = _track(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, start_new_session=True))
    sessions["s3"] = proc.pid
    port = _read_port(proc, "s3rver")
    version = "?"
    try:
        import json
        with open(os.path.join(REPO, "node_modules", "@20minutes", "s3rver", "package.json")) as f:
            version = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        pass
    return "http://127.0.0.1:%d" % port, "%s %s" % (kind, version)


def aws_env(work_dir, endpoint):
    """Environment for /usr/bin/aws and coldboot's s3:// against the local endpoint only."""
    cfg_dir = os.path.join(work_dir, "aws")
    os.makedirs(cfg_dir, exist_ok=True)
    config = os.path.join(cfg_dir, "config")
    creds = os.path.join(cfg_dir, "credentials")
    with open(config, "w") as f:
        f.write("[default]\nregion = %s\ns3 =\n    addressing_style = path\n"
                "    signature_version = s3v4\n" % S3_REGION)
    with open(creds, "w") as f:
        f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (S3_KEY_ID,
                                                                                   S3_SECRET))
    return {
        "AWS_CONFIG_FILE": config,
        "AWS_SHARED_CREDENTIALS_FILE": creds,
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_REGION": S3_REGION,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }


def aws_put(env, endpoint, path, key, timeout_s=300):
    r = subprocess.run([AWS, "--endpoint-url", endpoint, "s3", "cp", "--only-show-errors", path,
                        "s3://%s/%s" % (S3_BUCKET, key)], env=env, capture_output=True, text=True,
                       timeout=timeout_s)
    if r.returncode != 0:
        raise RuntimeError("aws s3 cp %s failed: %s" % (path, r.stderr.strip()[-400:]))
