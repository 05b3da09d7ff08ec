"""s3:// and presigned URLs, end to end: `coldboot ensure` against a local S3.

The S3 is @20minutes/s3rver 5.0.0 (tests/servers/s3rver.js; `npm ci` at the
repository root installs it), which checks SigV4 signatures and presigned
URLs with their expiry. Objects are put and URLs presigned by the Debian AWS
CLI (/usr/bin/aws), so our signing and URL encoding are checked by code we
did not write.
"""
import os
import select
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbtest  # noqa: E402 (needs the path above)
from cbtest import Failure, Skip, check, check_exit  # noqa: E402
from test_faults import FaultServer  # noqa: E402

AWS_CLI = "/usr/bin/aws"
KEY_ID = "AKIDCOLDBOOTE2E"
SECRET = "e2eSecret/with+chars"
TEMP_KEY_ID = "ASIACOLDBOOTE2E"
TEMP_SECRET = "e2eTempSecret"
TOKEN = "IQoJb3JpZ2luX2VjECOLDBOOT//e2e+token=="
BUCKET = "cb-e2e"
KEY_PLAIN = "bundles/app.zip"
KEY_ODD = "layers/ünï cødé ✓ with space+plus.zip"
KEY_BIG = "bundles/big.zip"  # big enough to be unpacked while it downloads
SLACK_S = 2.0


class S3Server:
    """tests/servers/s3rver.js in its own process, storing objects under a scratch folder."""

    def __init__(self, store):
        self.store = store
        self.proc = None
        self.port = None

    def start(self, timeout_s=30.0):
        if not os.path.isdir(os.path.join(cbtest.REPO, "node_modules", "@20minutes", "s3rver")):
            raise Skip("@20minutes/s3rver is not installed: run `npm ci` in %s" % cbtest.REPO)
        script = os.path.join(cbtest.REPO, "tests", "servers", "s3rver.js")
        self.proc = subprocess.Popen(["node", script, "--dir", self.store,
                                      "--key", "%s:%s" % (KEY_ID, SECRET),
                                      "--temp-key", "%s:%s:%s" % (TEMP_KEY_ID, TEMP_SECRET, TOKEN),
                                      "--bucket", BUCKET, "--max-seconds", "300"],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise Failure("s3rver.js did not print its port within %.0f s" % timeout_s)
        self.port = int(line)
        return self

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc is None:
            return
        cbtest.stop_process(self.proc)
        self.proc = None


class World:
    """A bundle zip put into s3rver under two keys, and the environment to reach it."""

    def __init__(self):
        if not os.access(AWS_CLI, os.X_OK):
            raise Skip("%s is missing (apt-get install awscli)" % AWS_CLI)
        self.work = cbtest.fresh_dir("s3")
        self.src = cbtest.make_layer_tree(os.path.join(self.work, "src"))
        self.zip = cbtest.zip_with_python(self.src, os.path.join(self.work, "b.zip"))
        self.checksum = cbtest.coldboot_hash(self.zip)
        self.digest = cbtest.digest_of(self.checksum)
        store = os.path.join(self.work, "store")
        os.makedirs(store)
        self.server = S3Server(store).start()
        self.config = os.path.join(self.work, "aws-config")
        # One PUT per object, even a 30 MB one: multipart uploads are not what is tested here.
        cbtest.write_file(self.config, "[default]\nregion = eu-central-1\ns3 =\n"
                          "    addressing_style = path\n    signature_version = s3v4\n"
                          "    multipart_threshold = 256MB\n")
        self.runs = 0
        for key in (KEY_PLAIN, KEY_ODD):
            self.aws("s3", "cp", "--only-show-errors", self.zip, "s3://%s/%s" % (BUCKET, key))
        # Under awscli's 8 MiB multipart threshold, over coldboot's 1 MiB streaming one.
        self.big_src = cbtest.make_layer_tree(os.path.join(self.work, "big-src"))
        cbtest.write_file(os.path.join(self.big_src, "lib", "libbig.so"), os.urandom(6 << 20), 0o755)
        self.big_zip = cbtest.zip_with_python(self.big_src, os.path.join(self.work, "big.zip"))
        self.big_checksum = cbtest.coldboot_hash(self.big_zip)
        self.aws("s3", "cp", "--only-show-errors", self.big_zip, "s3://%s/%s" % (BUCKET, KEY_BIG))

    def env(self, key_id=KEY_ID, secret=SECRET, token=None, **extra):
        values = {
            "AWS_CONFIG_FILE": self.config,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_ENDPOINT_URL_S3": self.server.endpoint,
            "AWS_ENDPOINT_URL": None,
            "AWS_REGION": "eu-central-1",
            "AWS_DEFAULT_REGION": None,
            "AWS_PROFILE": None,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_SESSION_TOKEN": token,
            "HTTP_PROXY": None, "HTTPS_PROXY": None, "http_proxy": None, "https_proxy": None,
        }
        values.update(extra)
        return cbtest.base_env(values)

    def aws(self, *args):
        proc = cbtest.run([AWS_CLI, "--endpoint-url", self.server.endpoint] + list(args), env=self.env())
        check_exit(proc, 0, "aws " + " ".join(args[:2]))
        return proc.stdout.strip()

    def presign(self, key, expires_s):
        url = self.aws("s3", "presign", "s3://%s/%s" % (BUCKET, key), "--expires-in", str(expires_s))
        check("X-Amz-Signature=" in url, "aws s3 presign printed %r" % url)
        return url

    def ensure(self, url, env, checksum=None, timeout_s=20):
        self.runs += 1
        cache = os.path.join(self.work, "cache-%d" % self.runs)
        started = time.monotonic()
        proc = cbtest.coldboot("ensure", "--url", url, "--checksum", checksum or self.checksum,
                               "--dir", cache, "--timeout", str(timeout_s), env=env,
                               timeout=timeout_s + 30)
        elapsed = time.monotonic() - started
        for secret in (SECRET, TEMP_SECRET, TOKEN, "X-Amz-Signature"):
            check(secret not in proc.stderr and secret not in proc.stdout,
                  "printed a secret (%s...): %r" % (secret[:6], proc.stderr))
        return proc, cache, elapsed

    def published(self, proc, cache):
        bundle = os.path.join(cache, "bundles", self.digest)
        check_exit(proc, 0)
        check(proc.stdout.strip() == bundle, "ensure printed %r, expected %r" % (proc.stdout, bundle))
        cbtest.check_same_tree(self.src, bundle)
        marker = cbtest.read_marker(bundle)
        text = repr(marker)
        check("X-Amz-Signature" not in text and SECRET not in text, "the marker holds a secret: %s" % text)
        return marker

    def failed(self, proc, cache, code, elapsed, *phrases, within_s=2.0):
        check_exit(proc, code)
        cbtest.check_nothing_published(cache)
        check(elapsed < within_s, "failing took %.1f s" % elapsed)
        cbtest.check_one_error(proc, *phrases)

    def close(self):
        self.server.stop()


_world = None


def world():
    global _world
    if _world is None:
        _world = World()
    return _world


def test_signed_get():
    w = world()
    proc, cache, _ = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN), w.env())
    marker = w.published(proc, cache)
    check(marker.get("url") == "s3://%s/%s" % (BUCKET, KEY_PLAIN), "marker url is %r" % marker.get("url"))


def test_key_with_unicode_spaces_and_plus():
    w = world()
    proc, cache, _ = w.ensure("s3://%s/%s" % (BUCKET, KEY_ODD), w.env())
    w.published(proc, cache)


def test_session_token():
    w = world()
    proc, cache, _ = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN),
                              w.env(key_id=TEMP_KEY_ID, secret=TEMP_SECRET, token=TOKEN))
    w.published(proc, cache)
    proc, cache, elapsed = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN),
                                    w.env(key_id=TEMP_KEY_ID, secret=TEMP_SECRET))
    w.failed(proc, cache, 4, elapsed, "InvalidToken")


def test_wrong_secret_fails_fast():
    w = world()
    proc, cache, elapsed = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN), w.env(secret="wrong-secret"))
    w.failed(proc, cache, 4, elapsed, "403", "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY")
    check("wrong-secret" not in proc.stderr, "the secret was printed")


def test_missing_key_fails_fast():
    w = world()
    proc, cache, elapsed = w.ensure("s3://%s/no/such.zip" % BUCKET, w.env())
    w.failed(proc, cache, 4, elapsed, "404", "NoSuchKey")


def test_missing_credentials_is_a_configuration_error():
    w = world()
    proc, cache, elapsed = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN),
                                    w.env(key_id=None, secret=None))
    w.failed(proc, cache, 3, elapsed, "AWS_ACCESS_KEY_ID")


def test_bad_region_is_a_configuration_error():
    w = world()
    proc, cache, elapsed = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN), w.env(AWS_REGION="eu west 1"))
    w.failed(proc, cache, 3, elapsed, "AWS_REGION")


def test_presigned_url():
    w = world()
    url = w.presign(KEY_ODD, 300)
    # The presigned URL needs none of our credentials.
    proc, cache, _ = w.ensure(url, w.env(key_id=None, secret=None))
    marker = w.published(proc, cache)
    shown = marker.get("url", "")
    check(shown.startswith(w.server.endpoint + "/" + BUCKET + "/layers/") and "X-Amz" not in shown,
          "the marker url is %r" % shown)


def test_tampered_presigned_url():
    w = world()
    url = w.presign(KEY_PLAIN, 300)
    head, sig = url.split("X-Amz-Signature=")
    tampered = head + "X-Amz-Signature=" + ("1" if sig[0] == "0" else "0") + sig[1:]
    proc, cache, elapsed = w.ensure(tampered, w.env(key_id=None, secret=None))
    w.failed(proc, cache, 4, elapsed, "SignatureDoesNotMatch")


def test_expired_presigned_url():
    w = world()
    url = w.presign(KEY_PLAIN, 1)
    time.sleep(2.1)  # X-Amz-Date has whole seconds
    proc, cache, elapsed = w.ensure(url, w.env(key_id=None, secret=None))
    w.failed(proc, cache, 4, elapsed, "expired", "presign")


def test_signed_get_unpacks_while_downloading():
    # The tail's ranged GET is signed like the body's; s3rver checks both signatures.
    w = world()
    for url, env in (("s3://%s/%s" % (BUCKET, KEY_BIG), w.env()),
                     (w.presign(KEY_BIG, 300), w.env(key_id=None, secret=None))):
        proc, cache, _ = w.ensure(url, env, checksum=w.big_checksum)
        bundle = os.path.join(cache, "bundles", cbtest.digest_of(w.big_checksum))
        check_exit(proc, 0)
        cbtest.check_same_tree(w.big_src, bundle)
        check("unpacking while downloading" in proc.stderr,
              "did not unpack while downloading: %r" % proc.stderr[-1500:])


def test_signed_parts_over_a_slow_link():
    # Through a proxy that gives each connection 30 MB/s, as one S3 GET over a network: the
    # rest of the body comes in ranged parts on more connections, each signed like the body's
    # and checked by s3rver behind the proxy (a bad signature would be a 403, and fail it).
    w = world()
    key = "bundles/parts.zip"
    src = cbtest.make_layer_tree(os.path.join(w.work, "parts-src"))
    for i in range(6):
        cbtest.write_file(os.path.join(src, "lib", "blob%d.bin" % i), os.urandom(5 << 20))
    zip_path = cbtest.zip_with_python(src, os.path.join(w.work, "parts.zip"))
    checksum = cbtest.coldboot_hash(zip_path)
    w.aws("s3", "cp", "--only-show-errors", zip_path, "s3://%s/%s" % (BUCKET, key))
    proxy = FaultServer(w.work, extra_args=("--proxy-to", w.server.port,
                                            "--proxy-bytes-per-second", 30e6)).start()
    try:
        env = w.env(AWS_ENDPOINT_URL_S3="http://127.0.0.1:%d" % proxy.port)
        proc, cache, _ = w.ensure("s3://%s/%s" % (BUCKET, key), env, checksum=checksum)
        seen = proxy.requests("/%s/%s" % (BUCKET, key))
    finally:
        proxy.stop()
    check_exit(proc, 0)
    cbtest.check_same_tree(src, os.path.join(cache, "bundles", cbtest.digest_of(checksum)))
    check("the rest comes in parts of 4 MiB" in proc.stderr, "no parts: %r" % proc.stderr[-1500:])
    parts = [r for r in seen if r["range"] and r["range"].split("-")[1] and
             int(r["range"].split("-")[1]) - int(r["range"][6:].split("-")[0]) + 1 == 4 << 20]
    check(len(parts) >= 2 and all(r["status"] == 206 for r in parts),
          "expected signed parts answered 206 by s3rver: %r" % seen)


def test_wrong_checksum_over_s3():
    w = world()
    proc, cache, elapsed = w.ensure("s3://%s/%s" % (BUCKET, KEY_PLAIN), w.env(),
                                    checksum="xxh3:" + "f" * 32)
    w.failed(proc, cache, 5, elapsed, "checksum", within_s=10.0)


if __name__ == "__main__":
    try:
        status = cbtest.main(globals())
    finally:
        if _world is not None:
            _world.close()
    sys.exit(status)
