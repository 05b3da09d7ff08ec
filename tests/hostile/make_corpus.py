#!/usr/bin/env python3
"""Writes hostile and legitimate zips, byte by byte, for the extractor's tests.

usage: make_corpus.py OUT_DIR [--escape-dir DIR]

Every archive is built here with struct, never with zipfile, so that each one
can break exactly one rule. OUT_DIR gets one .zip per case and two manifests
with the same content:

  cases.json  for people: a list of {name, file, expect, max_size_bytes,
              free_bytes, message, tree}
  cases.tsv   for the C test, one record per line, tab-separated:
                case  FILE  EXPECT  MAX_SIZE_BYTES  FREE_BYTES  MESSAGE
                file  PATH  MODE(octal)  CONTENT(hex)
                dir   PATH
                link  PATH  TARGET
              "file", "dir" and "link" lines list, for an "ok" case, every
              path the extraction must create, and nothing else.

EXPECT is "ok", "zip" (CB_E_ZIP) or "space" (CB_E_SPACE). MESSAGE is a
substring the error message must contain (empty for "ok"). MAX_SIZE_BYTES and
FREE_BYTES go to struct cb_unpack_options (0: no limit).

Absolute symlink targets point into --escape-dir (default: the parent of
OUT_DIR), so that a test watching that directory sees any escape.
"""

import argparse
import json
import os
import struct
import sys
import zlib

DOS_DATE = ((2024 - 1980) << 9) | (1 << 5) | 1  # 2024-01-01
DOS_TIME = 0

S_IFREG = 0o100000
S_IFDIR = 0o040000
S_IFLNK = 0o120000
S_IFCHR = 0o020000
S_IFBLK = 0o060000
S_IFIFO = 0o010000
S_IFSOCK = 0o140000

OS_DOS = 0
OS_UNIX = 3


class Entry:
    """One member. Fields default to an honest stored regular file."""

    def __init__(self, name, data=b"", method=0, mode=S_IFREG | 0o644, **kw):
        self.name = name if isinstance(name, bytes) else name.encode()
        self.data = data
        self.method = method
        self.mode = mode  # None: made by MS-DOS, no Unix mode
        self.comp = kw.pop("comp", None)  # raw compressed bytes
        self.crc = kw.pop("crc", None)  # declared CRC
        self.size = kw.pop("size", None)  # declared uncompressed size
        self.flags = kw.pop("flags", 0)
        self.dd = kw.pop("dd", False)  # sizes in a data descriptor
        self.zip64 = kw.pop("zip64", False)
        self.local_name = kw.pop("local_name", None)
        self.share = kw.pop("share", None)  # index of the entry whose local header we point at
        self.at = kw.pop("at", None)  # explicit local header offset (overlaps)
        self.skip_local = kw.pop("skip_local", False)  # no local record of its own
        if kw:
            raise TypeError("unknown fields: %s" % sorted(kw))

    def compressed(self):
        if self.comp is not None:
            return self.comp
        if self.method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            return c.compress(self.data) + c.flush()
        return self.data


def local_record(e, comp, crc, size):
    name = e.local_name if e.local_name is not None else e.name
    extra = b""
    version = 20
    l_crc, l_comp, l_size = crc, len(comp), size
    if e.zip64:
        version = 45
        extra = struct.pack("<HHQQ", 1, 16, size, len(comp))
        l_comp = l_size = 0xFFFFFFFF
    if e.dd:
        l_crc = l_comp = l_size = 0
        if e.zip64:
            extra = struct.pack("<HHQQ", 1, 16, 0, 0)
            l_comp = l_size = 0xFFFFFFFF
    head = struct.pack("<IHHHHHIIIHH", 0x04034B50, version, e.flags, e.method, DOS_TIME,
                       DOS_DATE, l_crc, l_comp, l_size, len(name), len(extra))
    out = head + name + extra + comp
    if e.dd:
        if e.zip64:
            out += struct.pack("<IIQQ", 0x08074B50, crc, len(comp), size)
        else:
            out += struct.pack("<IIII", 0x08074B50, crc, len(comp), size)
    return out


def central_record(e, comp, crc, size, offset):
    extra = b""
    c_comp, c_size, c_off = len(comp), size, offset
    version = 20
    if e.zip64:
        version = 45
        extra = struct.pack("<HHQQQ", 1, 24, size, len(comp), offset)
        c_comp = c_size = c_off = 0xFFFFFFFF
    if e.mode is None:
        made_by, ext = (OS_DOS << 8) | 20, 0x10 if e.name.endswith(b"/") else 0x20
    else:
        made_by, ext = (OS_UNIX << 8) | 30, (e.mode << 16) & 0xFFFFFFFF
        if e.mode & 0o170000 == S_IFDIR:
            ext |= 0x10
    head = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, made_by, version, e.flags, e.method,
                       DOS_TIME, DOS_DATE, crc, c_comp, c_size, len(e.name), len(extra), 0, 0, 0,
                       ext, c_off)
    return head + e.name + extra


def build(entries, prefix=b"", adjust=True, zip64_end=False, cut=None, comment=b"",
          count=None):
    """The archive's bytes. adjust=False leaves offsets blind to the prefix, as
    `cat stub a.zip` does."""
    body = bytearray()
    offsets = []
    comps = []
    base = len(prefix) if adjust else 0
    for e in entries:
        comp = e.compressed()
        crc = e.crc if e.crc is not None else zlib.crc32(e.data) & 0xFFFFFFFF
        size = e.size if e.size is not None else len(e.data)
        comps.append((comp, crc, size))
        if e.share is not None:
            offsets.append(offsets[e.share])
        elif e.at is not None:
            offsets.append(base + e.at)
        else:
            offsets.append(base + len(body))
        if not e.skip_local and e.share is None:
            body += local_record(e, comp, crc, size)
    cd = bytearray()
    for e, (comp, crc, size), off in zip(entries, comps, offsets):
        cd += central_record(e, comp, crc, size, off)
    cd_offset = base + len(body)
    n = len(entries) if count is None else count
    tail = b""
    if zip64_end:
        z64_at = cd_offset + len(cd)
        tail += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, (OS_UNIX << 8) | 45, 45, 0, 0, n, n,
                            len(cd), cd_offset)
        tail += struct.pack("<IIQI", 0x07064B50, 0, z64_at, 1)
        tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                            0xFFFFFFFF, len(comment))
    else:
        tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), cd_offset,
                            len(comment))
    out = bytes(prefix) + bytes(body) + bytes(cd) + tail + comment
    if cut is not None:
        out = out[:cut]
    return out


def f(name, data=b"", mode=0o644, **kw):
    return Entry(name, data, mode=S_IFREG | mode, **kw)


def d(name, mode=0o755, **kw):
    return Entry(name, b"", mode=S_IFDIR | mode, **kw)


def link(name, target, **kw):
    return Entry(name, target.encode() if isinstance(target, str) else target,
                 mode=S_IFLNK | 0o777, **kw)


def expect_file(path, data, mode):
    return {"type": "file", "path": path, "mode": mode, "hex": data.hex()}


def expect_dir(path):
    return {"type": "dir", "path": path}


def expect_link(path, target):
    return {"type": "link", "path": path, "target": target}


def cases(escape_dir):
    out = []

    def add(name, data, expect="zip", message="", tree=None, max_size=0, free=0):
        out.append({"name": name, "file": name + ".zip", "expect": expect,
                    "max_size_bytes": max_size, "free_bytes": free, "message": message,
                    "tree": tree or [], "bytes": data})

    def refused(name, data, message, max_size=0):
        add(name, data, "zip", message, max_size=max_size)

    run = b"#!/bin/sh\necho hello\n"
    text = b"some text\n" * 50

    # ---- legitimate archives, each with a shape that must keep working ----
    add("ok_basic", build([d("bin/"), f("bin/run", run, 0o755, method=8),
                           f("lib/data.txt", text, method=8), link("lib/current", "data.txt"),
                           link("bin/data", "../lib/data.txt")]),
        "ok", tree=[expect_dir("bin"), expect_dir("lib"), expect_file("bin/run", run, 0o755),
                    expect_file("lib/data.txt", text, 0o644),
                    expect_link("lib/current", "data.txt"),
                    expect_link("bin/data", "../lib/data.txt")])
    add("ok_setuid_dropped", build([f("suid", run, 0o4755), f("sgid", b"g", 0o2775),
                                    f("world_write", b"w", 0o666), f("private_exec", b"x", 0o700),
                                    d("sticky/", 0o1777), d("locked/", 0o500),
                                    f("locked/inner", b"i", 0o400)]),
        "ok", tree=[expect_file("suid", run, 0o755), expect_file("sgid", b"g", 0o755),
                    expect_file("world_write", b"w", 0o644),
                    expect_file("private_exec", b"x", 0o755), expect_dir("sticky"),
                    expect_dir("locked"), expect_file("locked/inner", b"i", 0o644)])
    stub = b"MZ" + bytes(range(256)) * 20
    legit = [d("pkg/"), f("pkg/a.txt", text, method=8), f("pkg/tool", run, 0o755)]
    legit_tree = [expect_dir("pkg"), expect_file("pkg/a.txt", text, 0o644),
                  expect_file("pkg/tool", run, 0o755)]
    add("ok_prefix_adjusted", build(legit, prefix=stub, adjust=True), "ok", tree=legit_tree)
    add("ok_prefix_unadjusted", build(legit, prefix=stub, adjust=False), "ok", tree=legit_tree)
    add("ok_data_descriptor",
        build([d("pkg/"), f("pkg/a.txt", text, method=8, flags=8, dd=True),
               f("pkg/tool", run, 0o755, flags=8, dd=True)]), "ok", tree=legit_tree)
    z64 = [d("pkg/", zip64=True), f("pkg/a.txt", text, method=8, zip64=True),
           f("pkg/tool", run, 0o755, zip64=True)]
    add("ok_zip64", build(z64, zip64_end=True), "ok", tree=legit_tree)
    add("ok_zip64_data_descriptor",
        build([d("pkg/"), f("pkg/a.txt", text, method=8, zip64=True, flags=8, dd=True),
               f("pkg/tool", run, 0o755, zip64=True, flags=8, dd=True)], zip64_end=True),
        "ok", tree=legit_tree)
    add("ok_zip64_prefix_unadjusted", build(z64, prefix=stub, adjust=False, zip64_end=True),
        "ok", tree=legit_tree)
    add("ok_comment", build(legit, comment=b"PK\x05\x06 looks like an end record, is not"),
        "ok", tree=legit_tree)
    add("ok_msdos_attributes", build([Entry("dos/", mode=None), Entry("dos/readme.txt", text,
                                                                      method=8, mode=None)]),
        "ok", tree=[expect_dir("dos"), expect_file("dos/readme.txt", text, 0o644)])
    add("ok_implied_dirs_and_nested_marker",
        build([f("a/b/c/deep.txt", b"deep"), f("a/" + ".coldboot.json", b"{}"),
               f("a/b/sibling.txt", b"s")]),
        "ok", tree=[expect_dir("a"), expect_dir("a/b"), expect_dir("a/b/c"),
                    expect_file("a/b/c/deep.txt", b"deep", 0o644),
                    expect_file("a/.coldboot.json", b"{}", 0o644),
                    expect_file("a/b/sibling.txt", b"s", 0o644)])
    add("ok_symlinks_inside",
        build([d("lib/"), f("lib/libfoo.so.1", b"ELF"), link("lib/libfoo.so", "libfoo.so.1"),
               link("self", "."), link("lib/up", ".."), link("via", "lib/up/lib/libfoo.so"),
               link("dangling", "not/there/../..")]),
        "ok", tree=[expect_dir("lib"), expect_file("lib/libfoo.so.1", b"ELF", 0o644),
                    expect_link("lib/libfoo.so", "libfoo.so.1"), expect_link("self", "."),
                    expect_link("lib/up", ".."), expect_link("via", "lib/up/lib/libfoo.so"),
                    expect_link("dangling", "not/there/../..")])
    add("ok_empty_archive", build([]), "ok", tree=[])
    add("ok_cap_exact", build([f("a", b"x" * 1000), f("b", b"y" * 24)]), "ok",
        tree=[expect_file("a", b"x" * 1000, 0o644), expect_file("b", b"y" * 24, 0o644)],
        max_size=1024)

    # ---- names ----
    refused("dotdot_root", build([f("../evil", b"x")]),
            'entry "../evil": name escapes the bundle ("..")')
    refused("dotdot_deep", build([f("ok.txt", b"o"), f("a/b/../../../evil", b"x")]),
            'entry "a/b/../../../evil": name escapes the bundle ("..")')
    refused("dotdot_last", build([d("a/.."), f("x", b"x")]), 'name escapes the bundle ("..")')
    refused("dotdot_dir", build([d("../up/")]), 'entry "../up/": name escapes the bundle')
    refused("absolute", build([f("/tmp/cb-hostile-abs", b"x")]),
            'entry "/tmp/cb-hostile-abs": absolute name')
    refused("absolute_dir", build([d("/")]), "absolute name")
    refused("backslash", build([f("..\\evil", b"x")]), "name contains a backslash")
    refused("backslash_inside", build([f("a\\b.txt", b"x")]), "name contains a backslash")
    refused("nul_name", build([f(b"ok.txt\x00../../evil", b"x")]),
            'entry "ok.txt\\x00../../evil": name contains a NUL byte')
    refused("empty_name", build([f(b"", b"x")]), 'entry "": empty name')
    refused("empty_component", build([f("a//b", b"x")]), "empty path component")
    refused("dot_component", build([f("a/./b", b"x")]), '"." path component')
    refused("long_component", build([f("a/" + "x" * 256, b"x")]),
            "path component longer than 255 bytes")
    refused("long_path", build([f("/".join(["y" * 250] * 17), b"x")]),
            "name longer than 4095 bytes")
    add("ok_long_but_legal", build([f("/".join(["z" * 255] * 15) + "/" + "w" * 254, b"x")]),
        "ok", tree=[expect_dir("/".join(["z" * 255] * (i + 1))) for i in range(15)] +
        [expect_file("/".join(["z" * 255] * 15) + "/" + "w" * 254, b"x", 0o644)])
    refused("marker_file", build([f("ok.txt", b"o"), f(".coldboot.json", b"{}")]),
            'entry ".coldboot.json": name collides with the marker ".coldboot.json"')
    refused("marker_symlink", build([f("x", b"x"), link(".coldboot.json", "x")]),
            "name collides with the marker")
    refused("marker_dir", build([f(".coldboot.json/inner", b"x")]),
            "name collides with the marker")
    refused("local_name_differs", build([f("good.txt", b"x", local_name=b"../evil.txt")]),
            "local header and central directory disagree on the name")

    # ---- symlinks ----
    refused("symlink_absolute", build([link("passwd", "/etc/passwd")]),
            'entry "passwd": symlink target "/etc/passwd" is absolute')
    refused("symlink_absolute_escape_dir",
            build([link("out", os.path.join(escape_dir, "cb-hostile-abs-link"))]), "is absolute")
    refused("symlink_relative_escape", build([d("a/"), link("a/up2", "../../x")]),
            'symlink target "../../x" escapes the bundle')
    refused("symlink_sibling_prefix", build([link("sib", "../staging-sibling")]),
            "escapes the bundle")
    refused("symlink_sibling_prefix_deep",
            build([d("a/b/"), link("a/b/sib", "../../../staging-sibling/x")]),
            "escapes the bundle")
    refused("symlink_through_symlink", build([link("l1", "."), link("l2", "l1/../x")]),
            'entry "l2": symlink target "l1/../x" escapes the bundle')
    refused("symlink_chain_escape",
            build([d("a/b/"), link("a/b/top", "../.."), link("a/out", "b/top/..")]),
            "escapes the bundle")
    refused("symlink_then_write_abs",
            build([link("a", os.path.join(escape_dir, "cb-hostile-x")), f("a/evil", b"x")]),
            'entry "a/evil": its parent "a" is a symlink in the archive, not a directory')
    refused("symlink_then_write_dotdot", build([link("a", ".."), f("a/evil", b"x")]),
            'its parent "a" is a symlink')
    refused("write_then_symlink", build([f("a/evil", b"x"), link("a", "..")]),
            'its parent "a" is a symlink')
    refused("symlink_then_write_inside",
            build([d("real/"), link("l", "real"), f("l/through", b"x")]),
            'entry "l/through": its parent "l" is a symlink')
    refused("symlink_then_dir", build([link("a", ".."), d("a/sub/")]),
            'its parent "a" is a symlink')
    refused("symlink_nul_target", build([link("l", b"ok\x00/../../x")]),
            "symlink target contains a NUL byte")
    refused("symlink_empty_target", build([link("l", b"")]), "symlink with an empty target")
    refused("symlink_loop_escape",
            build([link("a", "b/x"), link("b", "a/y"), link("c", "a/..")]),
            "too many levels of symlinks")

    # ---- modes ----
    refused("chardev", build([Entry("null", b"", mode=S_IFCHR | 0o666)]),
            'entry "null": character device entries are refused')
    refused("blockdev", build([Entry("sda", b"", mode=S_IFBLK | 0o660)]),
            "block device entries are refused")
    refused("fifo", build([Entry("pipe", b"", mode=S_IFIFO | 0o644)]),
            "FIFO entries are refused")
    refused("socket", build([Entry("sock", b"", mode=S_IFSOCK | 0o755)]),
            "socket entries are refused")
    refused("dir_name_file_mode", build([Entry("x/", b"", mode=S_IFREG | 0o644)]),
            "name ends in \"/\" but its mode is a regular file")

    # ---- structure ----
    refused("duplicate", build([f("a.txt", b"1"), f("b.txt", b"2"), f("a.txt", b"3")]),
            'entry "a.txt": duplicate name')
    refused("duplicate_dir", build([d("a/"), d("a/")]), "duplicate name")
    refused("file_and_dir", build([f("a", b"x"), d("a/")]),
            "a file and a directory at the same path")
    refused("symlink_and_dir", build([link("a", "x"), d("a/")]),
            'entry "a/": a symlink and a directory at the same path (entry "a")')
    refused("dir_and_file", build([d("a/"), f("a", b"x")]),
            'entry "a": a directory and a file at the same path (entry "a/")')
    refused("file_then_child", build([f("a", b"x"), f("a/b", b"y")]),
            'entry "a/b": its parent "a" is a file in the archive, not a directory')
    # Ancestors are checked once per run of names; a file whose name extends a checked
    # directory's ("f2" after "f/") must still be found as a parent.
    refused("file_parent_beside_dir",
            build([f("d/e/f/g.txt", b"x"), f("d/e/f2", b"y"), f("d/e/f2/h.txt", b"z"),
                   f("d/e/f3/i.txt", b"w")]),
            'entry "d/e/f2/h.txt": its parent "d/e/f2" is a file in the archive, not a directory')
    refused("dir_with_data", build([Entry("d/", b"hidden", mode=S_IFDIR | 0o755)]),
            'entry "d/": directory entry carries data')
    refused("shared_local_record", build([f("a", b"payload"), f("a", b"payload", share=0)]),
            'shares its local header with entry "a"')
    refused("shared_local_record_renamed",
            build([f("a", b"payload"), f("b", b"payload", share=0)]),
            "local header and central directory disagree on the name")
    inner = f("inner", b"inner data")
    inner_record = local_record(inner, inner.data, zlib.crc32(inner.data), len(inner.data))
    outer_header = 30 + len(b"outer")
    refused("overlapping_entries",
            build([f("outer", inner_record), Entry("inner", b"inner data", at=outer_header,
                                                   skip_local=True)]),
            'entry "inner": overlaps the data of entry "outer"')
    big = b"\0" * 100000
    refused("inflates_past_declared",
            build([f("bomb", big, method=8, size=1000, crc=zlib.crc32(big[:1000]))]),
            'entry "bomb": data inflates past its declared size')
    refused("inflates_from_zero",
            build([f("zero", big, method=8, size=0, crc=0)]),
            "data inflates past its declared size")
    refused("shorter_than_declared", build([f("short", b"tiny", size=4096)]),
            'entry "short": data does not match its declared size')
    bomb = b"\0" * (20 * 1024 * 1024)
    add("bomb_over_cap", build([f("bomb.bin", bomb, method=8)]), "zip",
        "zip: the entries declare 20971520 bytes unpacked, more than the cap of 1048576 bytes",
        max_size=1024 * 1024)
    add("bomb_over_free_space", build([f("bomb.bin", bomb, method=8)]), "space",
        "zip: unpacking needs 20973568 bytes but only 1048576 are free in", free=1024 * 1024)
    zeros = b"\0" * (1024 * 1024)
    add("bomb_many_entries", build([f("z%03d" % i, zeros, method=8) for i in range(64)]),
        "zip", "more than the cap of 8388608 bytes", max_size=8 * 1024 * 1024)
    add("cap_one_over", build([f("a", b"x" * 1000), f("b", b"y" * 25)]), "zip",
        "more than the cap of 1024 bytes", max_size=1024)
    # The free space must hold the data plus half a 4 KiB block per entry (2 x 2048 here).
    add("free_one_over", build([f("a", b"x" * 1000), f("b", b"y" * 25)]), "space",
        "needs 5121 bytes but only 5120 are free", max_size=4096, free=5120)
    add("ok_free_exact", build([f("a", b"x" * 1000), f("b", b"y" * 24)]), "ok",
        tree=[expect_file("a", b"x" * 1000, 0o644), expect_file("b", b"y" * 24, 0o644)],
        max_size=1024, free=5120)
    refused("bad_crc_last",
            build([f("one", b"1" * 100), f("two", text, method=8),
                   f("three", text, method=8, crc=zlib.crc32(text) ^ 1)]),
            'entry "three": CRC mismatch')
    refused("bad_crc_stored", build([f("only", b"stored data", crc=0x12345678)]),
            'entry "only": CRC mismatch')
    whole = build(legit)
    refused("truncated_half", whole[: len(whole) // 2], "no end of central directory record")
    refused("truncated_tail", whole[:-1], "no end of central directory record")
    refused("truncated_empty", b"", "no end of central directory record")
    refused("not_a_zip", b"this is not a zip file at all, just text\n" * 3,
            "no end of central directory record")
    refused("cd_past_end", _cd_past_end(legit),
            "the central directory lies past its end record")
    refused("too_many_entries_claimed", build(legit, count=60000),
            "entries cannot fit in a central directory")
    enc = f("secret.txt", b"\x11" * 12 + b"ciphertext", flags=1, crc=0x1234)
    refused("encrypted", build([f("plain.txt", b"p"), enc]),
            'entry "secret.txt": encrypted entries are not supported')
    refused("unknown_method", build([f("weird.bin", b"x", method=77, comp=b"????")]),
            'entry "weird.bin": unsupported compression method 77')
    refused("truncated_data",
            _truncate_data(build([f("a.txt", text, method=8)])),
            "data runs into the central directory")
    return out


def _cd_past_end(entries):
    data = bytearray(build(entries))
    # The end record's "central directory offset" pushed past the end record itself.
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, eocd + 16, len(data) + 100)
    return bytes(data)


def _truncate_data(data):
    # Keep the central directory and end record, but claim a compressed size
    # larger than the bytes between the local header and the directory.
    data = bytearray(data)
    cd = data.find(b"PK\x01\x02")
    (comp,) = struct.unpack_from("<I", data, cd + 20)
    struct.pack_into("<I", data, cd + 20, comp + 4096)
    return bytes(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--escape-dir", default=None)
    args = ap.parse_args()
    out_dir = os.path.abspath(args.out_dir)
    escape_dir = os.path.abspath(args.escape_dir or os.path.dirname(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    all_cases = cases(escape_dir)
    names = [c["name"] for c in all_cases]
    if len(set(names)) != len(names):
        sys.exit("make_corpus.py: duplicate case names")
    tsv = []
    for c in all_cases:
        with open(os.path.join(out_dir, c["file"]), "wb") as fh:
            fh.write(c.pop("bytes"))
        for field in (c["file"], c["message"]):
            if "\t" in field or "\n" in field:
                sys.exit("make_corpus.py: tab or newline in " + c["name"])
        tsv.append("case\t%s\t%s\t%d\t%d\t%s" % (c["file"], c["expect"], c["max_size_bytes"],
                                                c["free_bytes"], c["message"]))
        for t in c["tree"]:
            if t["type"] == "file":
                tsv.append("file\t%s\t%o\t%s" % (t["path"], t["mode"], t["hex"]))
            elif t["type"] == "dir":
                tsv.append("dir\t%s" % t["path"])
            else:
                tsv.append("link\t%s\t%s" % (t["path"], t["target"]))
    with open(os.path.join(out_dir, "cases.json"), "w") as fh:
        json.dump(all_cases, fh, indent=1)
        fh.write("\n")
    with open(os.path.join(out_dir, "cases.tsv"), "w") as fh:
        fh.write("\n".join(tsv) + "\n")
    print("make_corpus.py: %d cases in %s" % (len(all_cases), out_dir))


if __name__ == "__main__":
    main()
