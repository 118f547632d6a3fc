#!/usr/bin/env python3
"""Page-cache helper for bench/store.mjs (Node has neither posix_fadvise nor mincore).

  pagecache.py evict FILE...     posix_fadvise(POSIX_FADV_DONTNEED) on each file, with the share of
                                 its pages resident in the page cache before and after (mincore)
  pagecache.py resident FILE...  the share of each file's pages resident in the page cache

Prints one JSON line: {"files": [{"file", "bytes", "residentBefore", "residentAfter"}], ...}.
DONTNEED only drops clean pages that no process has mapped: the harness evicts while no reader
process holds the segments mapped (the store readers run in child processes that have exited).
"""
import ctypes
import ctypes.util
import json
import mmap
import os
import sys

libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
PAGE = mmap.PAGESIZE
MAP_FAILED = ctypes.c_void_p(-1).value


def resident(path):
    """Share (0..1) of the file's pages in the page cache; None when it cannot be told."""
    size = os.path.getsize(path)
    if size == 0:
        return 1.0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == MAP_FAILED:
            return None
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                return None
            return sum(v & 1 for v in vec) / pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("evict", "resident"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, files = sys.argv[1], sys.argv[2:]
    out = []
    for f in files:
        r = {"file": f, "bytes": os.path.getsize(f), "residentBefore": resident(f)}
        if cmd == "evict":
            evict(f)
            r["residentAfter"] = resident(f)
        out.append(r)
    print(json.dumps({"cmd": cmd, "files": out}))


if __name__ == "__main__":
    main()
