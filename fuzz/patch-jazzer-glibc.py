#!/usr/bin/env python3
"""Makes @jazzer.js/fuzzer's prebuilt linux-x64 addon load on glibc < 2.38 (Debian 12).

The npm package ships only prebuilt addons (no C++ source to compile instead), and its
linux-x64 one was linked against glibc 2.38: it needs exactly two symbols of that
version, __isoc23_strtol and __isoc23_strtoul (the C23 variants, which glibc's headers
pick for C++ code when built on glibc >= 2.38), and one of libstdc++'s GLIBCXX_3.4.32
(GCC 13), std::ios_base_library_init (see RENAME). They differ from plain strtol/strtoul
only in also accepting a "0b" binary prefix with base 0 or 2; libFuzzer and jazzer use
them to parse decimal flags such as -runs=1000. This script rewrites the two imports to
strtol/strtoul@GLIBC_2.2.5, the third to an existing libstdc++ symbol, and marks the
two too-new version requirements weak (so the loader does not insist on them), in
place. Idempotent; does nothing when the addon already loads or is not there.

  python3 fuzz/patch-jazzer-glibc.py [node_modules/@jazzer.js/fuzzer/prebuilds/fuzzer-linux-x64.node]
"""
import os
import struct
import sys

# old import -> (new import, its version, the too-new version it had)
RENAME = {
    b"__isoc23_strtol": (b"strtol", b"GLIBC_2.2.5", b"GLIBC_2.38"),
    b"__isoc23_strtoul": (b"strtoul", b"GLIBC_2.2.5", b"GLIBC_2.38"),
    # GCC 13's <ostream> only references this (never calls it) to pull in the library's
    # iostream initialisation; Node links libstdc++ and initialises iostreams itself.
    # Any existing symbol satisfies the reference: std::ios_base::Init::Init().
    b"_ZSt21ios_base_library_initv": (b"_ZNSt8ios_base4InitC1Ev", b"GLIBCXX_3.4", b"GLIBCXX_3.4.32"),
}
VER_FLG_WEAK = 0x2


def cstr(buf, off):
    return bytes(buf[off:buf.index(b"\0", off)])


def patch(path: str) -> int:
    with open(path, "rb") as f:
        b = bytearray(f.read())
    if b[:4] != b"\x7fELF" or b[4] != 2 or b[5] != 1:
        print(f"{path}: not a little-endian ELF64 file", file=sys.stderr)
        return 1
    e_shoff, = struct.unpack_from("<Q", b, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", b, 0x3A)
    secs = []
    for i in range(e_shnum):
        name, typ, _flags, _addr, off, size, link, _info, _align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", b, e_shoff + i * e_shentsize)
        secs.append(dict(name=name, type=typ, off=off, size=size, link=link, entsize=entsize))
    shstr = secs[e_shstrndx]["off"]
    by_name = {cstr(b, shstr + s["name"]).decode(): s for s in secs}
    dynsym, versym, verneed = by_name[".dynsym"], by_name[".gnu.version"], by_name.get(".gnu.version_r")
    dynstr = secs[dynsym["link"]]["off"]
    if verneed is None:
        return 0
    # version requirements: index -> (name, vernaux offset)
    vers = {}
    off = verneed["off"]
    while True:
        _vn_version, vn_cnt, _vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", b, off)
        a = off + vn_aux
        for _ in range(vn_cnt):
            _hash, _flags, other, vna_name, vna_next = struct.unpack_from("<IHHII", b, a)
            vers[other] = (cstr(b, dynstr + vna_name), a)
            a += vna_next
        if vn_next == 0:
            break
        off += vn_next
    by_ver = {n: i for i, (n, _a) in vers.items()}
    too_new = {old for (_n, _v, old) in RENAME.values() if old in by_ver}
    if not too_new:
        print(f"{path}: needs no GLIBC_2.38 / GLIBCXX_3.4.32 symbols; nothing to do")
        return 0
    changed = 0
    for i in range(dynsym["size"] // dynsym["entsize"]):
        so = dynsym["off"] + i * dynsym["entsize"]
        st_name, = struct.unpack_from("<I", b, so)
        name = cstr(b, dynstr + st_name)
        if name in RENAME:
            new, ver, _old = RENAME[name]
            if ver not in by_ver:
                print(f"{path}: no {ver.decode()} requirement to move {name.decode()} to", file=sys.stderr)
                return 1
            b[dynstr + st_name:dynstr + st_name + len(new) + 1] = new + b"\0"
            struct.pack_into("<H", b, versym["off"] + 2 * i, by_ver[ver])
            changed += 1
    bad = {by_ver[v] for v in too_new}
    left = []
    for i in range(versym["size"] // 2):
        v, = struct.unpack_from("<H", b, versym["off"] + 2 * i)
        if (v & 0x7FFF) in bad:
            so = dynsym["off"] + i * dynsym["entsize"]
            left.append(cstr(b, dynstr + struct.unpack_from("<I", b, so)[0]).decode())
    if left:
        print(f"{path}: other too-new symbols remain ({', '.join(left)}); not patched", file=sys.stderr)
        return 1
    for v in too_new:
        a = vers[by_ver[v]][1]
        flags, = struct.unpack_from("<H", b, a + 4)
        struct.pack_into("<H", b, a + 4, flags | VER_FLG_WEAK)
    with open(path, "rb") as f:
        if f.read() == bytes(b):
            print(f"{path}: already patched")
            return 0
    # never rewrite in place: a running fuzzer has the addon mapped (a truncate under it is SIGBUS)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(b)
    os.chmod(tmp, os.stat(path).st_mode)
    os.replace(tmp, path)
    print(f"{path}: {changed} imports moved to older versions; {b', '.join(sorted(too_new)).decode()} made weak")
    return 0


if __name__ == "__main__":
    sys.exit(patch(sys.argv[1] if len(sys.argv) > 1 else
                   "node_modules/@jazzer.js/fuzzer/prebuilds/fuzzer-linux-x64.node"))
