#!/usr/bin/env python3
"""A/B of guest serial output throughput: two qchar binaries (a change and
its parent, say), and optionally QEMU, alternating on the same demo image,
so that a fix's before/after is measured under the same machine noise.

Usage: ab_serial.py BIN_A BIN_B [BIN ...] [--qemu] [--rounds 5]
                    [--lines 5000] [--backend file|unix]

Each run starts the VMM with the line-limited demo guest on COM1 (file or
unix-socket client backend) and measures bytes/s at the receiving end from
the first byte to the last, as `cargo bench -p qchar --bench serial` does.
Prints every run and the median per binary.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LINE = 23  # "qchar-demo NNNNNNNNNN\r\n"


def one(prog, qemu, image, work, backend, total):
    args = [prog] + (["-enable-kvm"] if qemu else [])
    args += ["-nodefaults", "-display", "none",
             "-drive", "file=%s,format=raw,if=ide" % image, "-serial", "chardev:con"]
    out = os.path.join(work, "out.log")
    sock = os.path.join(work, "con.sock")
    for p in (out, sock):
        if os.path.exists(p):
            os.unlink(p)
    ls = None
    if backend == "file":
        args += ["-chardev", "file,id=con,path=" + out]
    else:
        ls = socket.socket(socket.AF_UNIX)
        ls.bind(sock)
        ls.listen(1)
        args += ["-chardev", "socket,id=con,path=%s,server=off" % sock]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        if backend == "file":
            first = None
            while True:
                n = os.path.getsize(out) if os.path.exists(out) else 0
                now = time.monotonic()
                if n and first is None:
                    first = (now, n)
                if n >= total:
                    return (total - first[1]) / (now - first[0])
                if now > deadline:
                    raise RuntimeError("stuck at %d bytes" % n)
                time.sleep(0.0002)
        else:
            ls.settimeout(60)
            c, _ = ls.accept()
            got = 0
            first = None
            while got < total:
                b = c.recv(65536)
                if not b:
                    raise RuntimeError("closed at %d bytes" % got)
                got += len(b)
                if first is None:
                    first = (time.monotonic(), got)
            return (total - first[1]) / (time.monotonic() - first[0])
    finally:
        if ls:
            ls.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins", nargs="+")
    ap.add_argument("--qemu", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--backend", choices=["file", "unix"], default="file")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="qchar-ab-")
    try:
        image = os.path.join(work, "demo.img")
        subprocess.run([a.bins[0], "--write-builtin-image", "demo:%d" % a.lines, image],
                       check=True)
        who = [(b, False) for b in a.bins] + ([("qemu-system-x86_64", True)] if a.qemu else [])
        rates = {w: [] for w, _ in who}
        for r in range(a.rounds):
            for prog, qemu in who:
                x = one(prog, qemu, image, work, a.backend, a.lines * LINE)
                rates[prog].append(x)
                print("round %d %-40s %8.0f B/s" % (r, prog[-40:], x), flush=True)
        for prog, _ in who:
            v = rates[prog]
            print("median %-40s %8.0f B/s  (min %.0f, max %.0f)"
                  % (prog[-40:], statistics.median(v), min(v), max(v)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
