#!/usr/bin/env python3
"""Deterministic benchmark bundles for coldboot (generated at bench time, never committed).

    gen_bundles.py --out DIR [--only NAME]... [--force]

Writes DIR/<name>.zip for each bundle (Info-ZIP `zip -r -q -y`, default level 6) and
DIR/<name>.json with its facts (files, dirs, symlinks, unpacked bytes, zip bytes). A zip that
already exists with its .json is kept: generation happens only when something is missing.

Bundles:
  sitepkgs  ~100 MB unpacked in ~25k files: a node_modules / site-packages-like tree of nested
            packages with Python-like source, stubs, metadata, __pycache__ bytecode and some
            shared-object-like binaries (mixed entropy), plus a few symlinks.
  browser   ~150 MB unpacked: one ~110 MB executable-like binary (mixed compressible and
            incompressible data) plus a few libraries, resource packs and locale files,
            laid out like a headless browser layer under bin/ and lib/.
  nodemods  ~110 MB unpacked in ~45k small files and ~7.8k directories: a node_modules-like
            tree of ~1,700 packages (package.json, README, LICENSE, .js, .d.ts, .js.map), some
            nested in another's node_modules, a few bin/ symlinks.
  small     ~12 MB, ~2.5k files: the sitepkgs recipe scaled down, for callgrind/strace runs.

The content is made from a seeded PRNG only, so the same command yields the same bytes (and
the same checksum) on any machine with the same Python major version.
"""
import argparse
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import zipfile

KEYWORDS = ["def", "class", "return", "import", "from", "if", "elif", "else", "for", "while",
            "try", "except", "finally", "with", "as", "yield", "lambda", "raise", "assert", "pass",
            "not", "and", "or", "in", "is", "None", "True", "False", "self", "async", "await"]
SYLLABLES = ["get", "set", "load", "dump", "read", "write", "parse", "make", "build", "run",
             "config", "value", "item", "node", "tree", "path", "file", "data", "buf", "size",
             "index", "name", "key", "cache", "handle", "request", "response", "client", "server",
             "stream", "chunk", "token", "error", "state", "context", "option", "result", "field",
             "schema", "model", "array", "frame", "column", "encode", "decode", "hash", "lock",
             "queue", "event", "loop", "task", "worker", "pool", "socket", "header", "body"]

TEMPLATES = [
    "{i}def {f}(self, {a}, {b}=None):",
    "{i}def {f}({a}, *args, **kwargs):",
    "{i}class {C}({C2}):",
    "{i}return {a}.{f}({b})",
    "{i}if {a} is None:",
    "{i}if not isinstance({a}, {C}):",
    "{i}    raise {C}Error(\"{s} {a} must be a {C}, got %r\" % ({a},))",
    "{i}for {a} in {b}:",
    "{i}{a} = {b}.{f}({n})",
    "{i}{a} = self._{b}[{n}]",
    "{i}self.{a} = {b}",
    "{i}{a}, {b} = {f}({a}, {b})",
    "{i}except {C}Error as exc:",
    "{i}try:",
    "{i}with {f}({a}) as {b}:",
    "{i}# {s} the {a} {b} before {f} is called",
    "{i}\"\"\"{S} {a} {b} and return the {f} result.\"\"\"",
    "{i}from .{a} import {C}, {f}",
    "{i}import {a}.{b}",
    "{i}yield {a}, {b}",
    "{i}assert {a} >= {n}, \"{s} {b}\"",
    "{i}logger.debug(\"{s} %s %d\", {a}, {n})",
    "{i}{a} = {{\"{b}\": {n}, \"{f}\": {a}}}",
    "{i}return [{a} for {a} in {b} if {a}.{f}]",
    "",
    "",
]


def ident(rng, parts=2):
    return "_".join(rng.choice(SYLLABLES) for _ in range(parts))


def camel(rng):
    return "".join(rng.choice(SYLLABLES).capitalize() for _ in range(rng.randint(1, 3)))


def make_line_pool(rng, count):
    """Python-like lines: what a deflate coder sees in real source (keywords, idents, indent)."""
    pool = []
    for _ in range(count):
        t = rng.choice(TEMPLATES)
        s = rng.choice(SYLLABLES)
        pool.append(t.format(i="    " * rng.choice((0, 1, 1, 2, 2, 2, 3)), f=ident(rng),
                             a=ident(rng, rng.randint(1, 2)), b=ident(rng, 1), C=camel(rng),
                             C2=camel(rng), n=rng.randint(0, 4096), s=s, S=s.capitalize()))
    return pool


def make_code_pool(rng, size):
    """Machine-code-like bytes: skewed byte distribution, compresses about 1.6-2x with deflate."""
    alphabet = list(range(256))
    weights = [1.0 / (1 + (b * 37 % 256) ** 0.9) for b in alphabet]
    for b in (0x00, 0x48, 0x89, 0x8B, 0xE8, 0xFF, 0x0F, 0x24, 0x44, 0xC3):
        weights[b] *= 40
    out = bytearray()
    block = 1 << 16
    while len(out) < size:
        out += bytes(rng.choices(alphabet, weights, k=block))
    return bytes(out[:size])


class Writer:
    """Writes files under root and counts what it wrote."""

    def __init__(self, root):
        self.root = root
        self.files = 0
        self.dirs = 0
        self.symlinks = 0
        self.bytes = 0
        self._seen_dirs = set()
        self._seen_files = set()

    def _mkdirs(self, rel_dir):
        parts = rel_dir.split("/") if rel_dir else []
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._seen_dirs:
                os.makedirs(os.path.join(self.root, d), exist_ok=True)
                self._seen_dirs.add(d)
                self.dirs += 1

    def _unique(self, rel):
        """Generated names may repeat: a repeat gets a numbered name instead of overwriting."""
        if rel not in self._seen_files:
            self._seen_files.add(rel)
            return rel
        stem, dot, ext = rel.rpartition(".") if "." in os.path.basename(rel) else (rel, "", "")
        n = 2
        while "%s_%d%s%s" % (stem, n, dot, ext) in self._seen_files:
            n += 1
        rel = "%s_%d%s%s" % (stem, n, dot, ext)
        self._seen_files.add(rel)
        return rel

    def file(self, rel, data, mode=0o644):
        rel = self._unique(rel)
        self._mkdirs(os.path.dirname(rel))
        path = os.path.join(self.root, rel)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        self.files += 1
        self.bytes += len(data)

    def symlink(self, rel, target):
        rel = self._unique(rel)
        self._mkdirs(os.path.dirname(rel))
        os.symlink(target, os.path.join(self.root, rel))
        self.symlinks += 1


class Content:
    def __init__(self, rng):
        self.rng = rng
        self.lines = make_line_pool(rng, 12000)
        self.code = make_code_pool(rng, 4 << 20)

    def text(self, size):
        rng = self.rng
        out = []
        n = 0
        while n < size:
            chunk = rng.choices(self.lines, k=64)
            s = "\n".join(chunk) + "\n"
            out.append(s)
            n += len(s)
        return "".join(out).encode()[:size]

    def codelike(self, size):
        rng = self.rng
        out = bytearray()
        while len(out) < size:
            n = min(size - len(out), rng.randint(512, 8192))
            off = rng.randrange(0, len(self.code) - n)
            out += self.code[off:off + n]
        return bytes(out)

    def binary(self, size, random_share, code_share):
        """Chunks of random (incompressible), code-like, string-table and zero bytes."""
        rng = self.rng
        out = bytearray()
        while len(out) < size:
            n = min(size - len(out), rng.choice((4096, 16384, 65536)))
            r = rng.random()
            if r < random_share:
                out += rng.randbytes(n)
            elif r < random_share + code_share:
                out += self.codelike(n)
            elif r < random_share + code_share + 0.6 * (1 - random_share - code_share):
                out += self.text(n)
            else:
                out += bytes(n)
        return bytes(out)


def lognormal_size(rng, median, sigma, lo, hi):
    return int(min(hi, max(lo, rng.lognormvariate(0, sigma) * median)))


def gen_sitepkgs(w, seed, packages, mods_per_pkg, so_count):
    rng = random.Random(seed)
    c = Content(rng)
    for p in range(packages):
        pkg = "%s_%d" % (ident(rng, 1), p)
        version = "%d.%d.%d" % (rng.randint(0, 9), rng.randint(0, 30), rng.randint(0, 20))
        info = "python/%s-%s.dist-info" % (pkg, version)
        w.file(info + "/METADATA", c.text(lognormal_size(rng, 2500, 0.8, 300, 40000)))
        w.file(info + "/RECORD", c.text(lognormal_size(rng, 3000, 1.0, 200, 60000)))
        w.file(info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n")
        w.file(info + "/top_level.txt", pkg.encode() + b"\n")
        subdirs = [""]
        for _ in range(rng.randint(0, 6)):
            parent = rng.choice(subdirs)
            if parent.count("/") < 4:
                subdirs.append((parent + "/" if parent else "") + ident(rng, 1))
        nmods = max(1, int(rng.expovariate(1.0 / mods_per_pkg)))
        for d in subdirs:
            base = "python/%s/%s" % (pkg, d) if d else "python/%s" % pkg
            w.file(base + "/__init__.py", c.text(lognormal_size(rng, 400, 1.2, 0, 20000)))
        for _ in range(nmods):
            d = rng.choice(subdirs)
            base = "python/%s/%s" % (pkg, d) if d else "python/%s" % pkg
            mod = ident(rng, rng.randint(1, 2))
            size = lognormal_size(rng, 2400, 1.1, 60, 400000)
            w.file(base + "/%s.py" % mod, c.text(size))
            r = rng.random()
            if r < 0.55:
                # Bytecode: a header, marshalled constants (strings) and opcodes.
                pyc = (b"\xcb\r\r\n" + bytes(12) + c.codelike(size // 3) + c.text(size // 4))
                w.file(base + "/__pycache__/%s.cpython-311.pyc" % mod, pyc)
            elif r < 0.65:
                w.file(base + "/%s.pyi" % mod, c.text(size // 4 + 40))
        if rng.random() < 0.15:
            w.file("python/%s/py.typed" % pkg, b"")
    for s in range(so_count):
        pkg_dir = "python/%s_libs" % ident(rng, 1)
        name = "_%s_%d.cpython-311-x86_64-linux-gnu.so" % (ident(rng, 1), s)
        size = lognormal_size(rng, 90000, 1.3, 8000, 6 << 20)
        data = b"\x7fELF\x02\x01\x01" + bytes(9) + c.binary(size, 0.30, 0.45)
        w.file(pkg_dir + "/" + name, data, 0o755)
        if rng.random() < 0.05:
            w.symlink(pkg_dir + "/" + name.replace(".cpython-311-x86_64-linux-gnu", ""), name)


def gen_browser(w, seed):
    rng = random.Random(seed)
    c = Content(rng)
    mib = 1 << 20
    w.file("bin/headless_shell", b"\x7fELF\x02\x01\x01" + bytes(9) +
           c.binary(105 * mib, 0.35, 0.5), 0o755)
    w.file("bin/chrome_crashpad_handler", b"\x7fELF" + c.binary(1 * mib + 4000, 0.3, 0.6), 0o755)
    for name, size in (("libEGL.so", 480000), ("libGLESv2.so", 7 * mib + 123), ("libvk_swiftshader.so",
                       5 * mib + 77), ("libvulkan.so.1", 900000), ("libnss3.so", 1400000),
                       ("libfreebl3.so", 700000), ("libsoftokn3.so", 450000)):
        w.file("lib/" + name, b"\x7fELF\x02\x01\x01" + bytes(9) + c.binary(size, 0.35, 0.5), 0o755)
    w.symlink("lib/libvulkan.so", "libvulkan.so.1")
    w.file("bin/icudtl.dat", c.binary(10 * mib, 0.15, 0.25))
    w.file("bin/resources.pak", c.binary(6 * mib, 0.25, 0.25))
    w.file("bin/headless_lib_data.pak", c.binary(1 * mib, 0.2, 0.2))
    w.file("bin/v8_context_snapshot.bin", c.binary(700000, 0.3, 0.5))
    w.file("bin/vk_swiftshader_icd.json", b'{"file_format_version": "1.0.0", "ICD": '
           b'{"library_path": "../lib/libvk_swiftshader.so", "api_version": "1.0.5"}}\n')
    locales = ["af", "am", "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en-GB", "en-US", "es",
               "es-419", "et", "fa", "fi", "fil", "fr", "gu", "he", "hi", "hr", "hu", "id", "it",
               "ja", "kn", "ko", "lt", "lv", "ml", "mr", "ms", "nb", "nl", "pl", "pt-BR", "pt-PT",
               "ro", "ru", "sk", "sl", "sr", "sv", "sw", "ta", "te", "th", "tr", "uk", "ur", "vi",
               "zh-CN", "zh-TW"]
    for loc in locales:
        w.file("bin/locales/%s.pak" % loc, c.binary(lognormal_size(rng, 150000, 0.3, 60000,
                                                                   500000), 0.1, 0.1))
    w.file("bin/LICENSE.headless_shell", c.text(mib // 2))


def gen_nodemods(w, seed, packages):
    """node_modules: many small packages, each a few directories of small .js/.d.ts/.map files,
    some with their own nested node_modules; the small-file, many-directory end of bundles."""
    rng = random.Random(seed)
    c = Content(rng)
    vlq = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    names = []
    for p in range(packages):
        scope = "@%s/" % ident(rng, 1) if rng.random() < 0.2 else ""
        name = "%s%s-%d" % (scope, ident(rng, rng.randint(1, 2)).replace("_", "-"), p)
        nested = rng.random() < 0.15 and names
        base = "node_modules/%s/node_modules/%s" % (rng.choice(names), name) if nested else \
            "node_modules/%s" % name
        if not nested:
            names.append(name)
        version = "%d.%d.%d" % (rng.randint(0, 9), rng.randint(0, 30), rng.randint(0, 20))
        w.file(base + "/package.json", b'{"name": "%s", "version": "%s", "main": "lib/index.js"}\n'
               % (name.encode(), version.encode()))
        w.file(base + "/README.md", c.text(lognormal_size(rng, 3000, 1.0, 200, 60000)))
        w.file(base + "/LICENSE", c.text(1070))
        if rng.random() < 0.4:
            w.file(base + "/CHANGELOG.md", c.text(lognormal_size(rng, 5000, 1.0, 200, 80000)))
        dirs = ["lib"]
        for _ in range(rng.randint(0, 5)):
            parent = rng.choice(dirs)
            if parent.count("/") < 3:
                dirs.append(parent + "/" + ident(rng, 1))
        if rng.random() < 0.5:
            dirs.append("dist")
        for _ in range(max(1, int(rng.expovariate(1.0 / 14)))):
            d = rng.choice(dirs)
            mod = ident(rng, rng.randint(1, 2)).replace("_", "-")
            size = lognormal_size(rng, 1800, 1.1, 40, 300000)
            w.file("%s/%s/%s.js" % (base, d, mod), c.text(size))
            r = rng.random()
            if r < 0.5:
                w.file("%s/%s/%s.d.ts" % (base, d, mod), c.text(size // 3 + 30))
            if r < 0.3:
                m = "".join(rng.choice(vlq) for _ in range(size // 2 + 20))
                w.file("%s/%s/%s.js.map" % (base, d, mod), m.encode())
        if rng.random() < 0.05:
            w.file(base + "/bin/cli.js", b"#!/usr/bin/env node\nrequire('../lib/index.js');\n",
                   0o755)
            w.symlink("node_modules/.bin/%s" % name.replace("/", "-"),
                      "../%s/bin/cli.js" % base[len("node_modules/"):])


FIXED_MTIME = 1700000000

BUNDLES = {
    "sitepkgs": lambda w: gen_sitepkgs(w, 20240101, packages=340, mods_per_pkg=36, so_count=130),
    "browser": lambda w: gen_browser(w, 20240202),
    "small": lambda w: gen_sitepkgs(w, 20240303, packages=45, mods_per_pkg=36, so_count=30),
    "nodemods": lambda w: gen_nodemods(w, 20240404, packages=1700),
}


def build(out_dir, name, force=False):
    zip_path = os.path.join(out_dir, name + ".zip")
    meta_path = os.path.join(out_dir, name + ".json")
    if not force and os.path.exists(zip_path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            return json.load(f)
    tree = os.path.join(out_dir, "tree-" + name)
    if os.path.exists(tree):
        shutil.rmtree(tree)
    os.makedirs(tree)
    w = Writer(tree)
    BUNDLES[name](w)
    tmp_zip = zip_path + ".tmp.zip"
    if os.path.exists(tmp_zip):
        os.unlink(tmp_zip)
    # Fixed timestamps, so the zip (and its checksum) is the same from run to run.
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(tree, (FIXED_MTIME, FIXED_MTIME))
    # As a user builds a layer: Info-ZIP, recursive, symlinks stored as links; -X leaves out
    # uid/gid extra fields.
    subprocess.run(["zip", "-r", "-q", "-y", "-X", os.path.abspath(tmp_zip), "."], cwd=tree,
                   check=True)
    meta = zip_facts(tmp_zip, name)
    if (meta["files"], meta["symlinks"], meta["unpacked_bytes"]) != (w.files, w.symlinks, w.bytes):
        raise SystemExit("gen_bundles: %s: the zip does not hold what was written" % name)
    os.replace(tmp_zip, zip_path)
    shutil.rmtree(tree)
    return write_meta(meta_path, meta)


def zip_facts(path, name):
    """What a zip holds, counted from its central directory."""
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    links = [i for i in infos if stat.S_ISLNK(i.external_attr >> 16)]
    regular = [i for i in infos if not i.is_dir() and not stat.S_ISLNK(i.external_attr >> 16)]
    # Directories as the unpacked tree has them: listed ones and those only implied by a path.
    dirs = set(i.filename.rstrip("/") for i in infos if i.is_dir())
    for i in infos:
        parts = i.filename.rstrip("/").split("/")[:-1]
        dirs.update("/".join(parts[:k]) for k in range(1, len(parts) + 1))
    return {"name": name, "files": len(regular), "dirs": len(dirs), "symlinks": len(links),
            "entries": len(infos), "unpacked_bytes": sum(i.file_size for i in regular),
            "compressed_bytes": sum(i.compress_size for i in infos),
            "zip_bytes": os.path.getsize(path)}


def write_meta(meta_path, meta):
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return meta


def adopt(out_dir, name, path):
    """A zip of the user's own (bench/run.py --zip NAME=PATH): linked (or copied) in as
    out_dir/NAME.zip, its facts counted from it. Always redone: the file may have changed."""
    zip_path = os.path.join(out_dir, name + ".zip")
    tmp = zip_path + ".tmp.zip"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(os.path.realpath(path), tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, zip_path)
    meta = zip_facts(zip_path, name)
    meta["source"] = os.path.abspath(path)
    return write_meta(os.path.join(out_dir, name + ".json"), meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", action="append", choices=sorted(BUNDLES))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or ["sitepkgs", "browser", "nodemods"]:
        meta = build(args.out, name, args.force)
        print("%s: %d files, %d dirs, %d symlinks, %.1f MB unpacked, %.1f MB zip" % (
            name, meta["files"], meta["dirs"], meta["symlinks"], meta["unpacked_bytes"] / 1e6,
            meta["zip_bytes"] / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
