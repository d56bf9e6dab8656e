#!/usr/bin/env python3
"""Guest serial throughput over time across a run of backend changes.

The demo guest prints numbered lines on COM1 as fast as the UART lets it.
Every INTERVAL seconds for DURATION seconds its chardev is changed over QMP,
round robin: file -> unix socket -> pty -> file -> ... This script is the
receiving end of every target (it polls the files, is the listening peer of
the unix sockets, reads the ptys in raw mode), time-stamps what arrives,
and plots the bytes per BUCKET seconds over time with the change instants
marked, for qchar and (with --qemu) for QEMU on the same boot image.

Usage: swap_plot.py --qchar PATH [--qemu [--no-qchar]] [--out PNG]
                    [--duration 10] [--interval 0.1] [--bucket 0.05]
                    [--kinds file,unix,pty]
Prints one RESULT line per VMM (for scripts/bench.sh). Needs matplotlib.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty

KINDS = ["file", "unix", "pty"]


class Qmp:
    """A minimal synchronous QMP client over a unix socket."""

    def __init__(self, path, timeout=60.0):
        end = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.01)
        self.f = s.makefile("rw")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        c = {"execute": name}
        if args is not None:
            c["arguments"] = args
        self.f.write(json.dumps(c) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP closed")
            r = json.loads(line)
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"]))
            return r["return"]


class Recorder:
    """Arrival log: (monotonic time, bytes) from every reader."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log = []
        self.stop = threading.Event()
        self.threads = []

    def add(self, n):
        if n > 0:
            with self.lock:
                self.log.append((time.monotonic(), n))

    def spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def poll_file(self, path, done):
        """Counts growth of `path` until `done` is set and it stops growing."""
        seen = 0
        quiet = 0
        while not self.stop.is_set():
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                size = 0
            if size > seen:
                self.add(size - seen)
                seen = size
                quiet = 0
            elif done.is_set():
                quiet += 1
                if quiet > 50:
                    return
            time.sleep(0.002)

    def read_sock(self, listener):
        conn, _ = listener.accept()
        listener.close()
        conn.settimeout(0.2)
        while not self.stop.is_set():
            try:
                b = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not b:
                break
            self.add(len(b))
        conn.close()

    def read_pty(self, path):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)  # no echo back into the guest, no line discipline
        os.set_blocking(fd, False)
        try:
            while not self.stop.is_set():
                try:
                    b = os.read(fd, 65536)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:  # EIO: the master closed
                    break
                if not b:
                    break
                self.add(len(b))
        finally:
            os.close(fd)


def run(vmm, program, image, work, duration, interval, kinds):
    qmp_path = os.path.join(work, vmm + "-qmp.sock")
    first = os.path.join(work, vmm + "-0.log")
    args = [program]
    if vmm == "qemu":
        args.append("-enable-kvm")
    args += ["-nodefaults", "-display", "none", "-S",
             "-drive", "file=%s,format=raw,if=ide" % image,
             "-chardev", "file,id=con,path=" + first, "-serial", "chardev:con",
             "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rec = Recorder()
    swaps = []  # (t_sent, t_replied, kind)
    try:
        q = Qmp(qmp_path)
        done = threading.Event()
        rec.spawn(rec.poll_file, first, done)
        q.cmd("cont")
        # Wait for the guest to print (QEMU boots SeaBIOS first).
        end = time.monotonic() + 60
        while not rec.log:
            if time.monotonic() > end:
                raise RuntimeError(vmm + ": no guest output")
            time.sleep(0.01)
        time.sleep(0.5)
        start = time.monotonic()
        n = 0
        while True:
            due = start + (n + 1) * interval
            if due > start + duration:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            n += 1
            kind = kinds[n % len(kinds)]
            prev_done = done
            done = threading.Event()
            if kind == "file":
                path = os.path.join(work, "%s-%d.log" % (vmm, n))
                backend = {"type": "file", "data": {"out": path}}
            elif kind == "unix":
                path = os.path.join(work, "%s-%d.sock" % (vmm, n))
                ls = socket.socket(socket.AF_UNIX)
                ls.bind(path)
                ls.listen(1)
                rec.spawn(rec.read_sock, ls)
                backend = {"type": "socket", "data": {
                    "addr": {"type": "unix", "data": {"path": path}},
                    "server": False}}
            else:
                backend = {"type": "pty", "data": {}}
            t0 = time.monotonic()
            r = q.cmd("chardev-change", {"id": "con", "backend": backend})
            t1 = time.monotonic()
            prev_done.set()
            if kind == "file":
                rec.spawn(rec.poll_file, path, done)
            elif kind == "pty":
                rec.spawn(rec.read_pty, r["pty"])
            swaps.append((t0, t1, kind))
        q.cmd("stop")
        time.sleep(0.2)
        stop_t = time.monotonic()
        try:
            q.cmd("quit")
        except (EOFError, OSError):
            pass
    finally:
        rec.stop.set()
        for t in rec.threads:
            t.join(timeout=2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return rec.log, swaps, start, stop_t


def buckets(log, start, stop, width):
    n = int((stop - start) / width) + 1
    b = [0] * n
    for t, k in log:
        i = int((t - start) / width)
        if 0 <= i < n:
            b[i] += k
    return b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qchar", required=True)
    ap.add_argument("--qemu", action="store_true")
    ap.add_argument("--out", default="throughput-over-swaps.png")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--bucket", type=float, default=0.05)
    ap.add_argument("--kinds", default="file,unix,pty",
                    help="backends to cycle through (default file,unix,pty)")
    ap.add_argument("--no-qchar", action="store_true", help="QEMU only (with --qemu)")
    a = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = tempfile.mkdtemp(prefix="qchar-swaps-")
    try:
        image = os.path.join(work, "demo.img")
        subprocess.run([a.qchar, "--write-builtin-image", "demo", image], check=True)
        kinds = a.kinds.split(",")
        vmms = [] if a.no_qchar else [("qchar", a.qchar)]
        if a.qemu:
            vmms.append(("qemu", "qemu-system-x86_64"))
        results = []
        for vmm, prog in vmms:
            log, swaps, start, stop = run(vmm, prog, image, work, a.duration, a.interval, kinds)
            # From half a second before the first change to the end.
            t0 = start - 0.5
            b = buckets(log, t0, stop, a.bucket)
            total = sum(k for t, k in log if start <= t <= swaps[-1][1])
            span = swaps[-1][1] - start
            lat = sorted(t1 - t0_ for t0_, t1, _ in swaps)
            for t0_, t1, kind in swaps:
                if t1 - t0_ > 0.05:
                    print("%s: change to %s at %.2f s took %.0f ms"
                          % (vmm, kind, t0_ - start + 0.5, (t1 - t0_) * 1e3), file=sys.stderr)
            # Buckets fully inside the change run.
            inner = b[int(0.5 / a.bucket) + 1:int((swaps[-1][1] - t0) / a.bucket)]
            rate = total / span
            print("RESULT swaps %s changes=%d rate_b_s=%.0f min_bucket_b=%d zero_buckets=%d "
                  "change_p50_ms=%.2f change_max_ms=%.2f"
                  % (vmm, len(swaps), rate, min(inner), sum(1 for x in inner if x == 0),
                     lat[len(lat) // 2] * 1e3, lat[-1] * 1e3))
            results.append((vmm, b, swaps, t0, rate))

        fig, axes = plt.subplots(len(results), 1, figsize=(12, 3.6 * len(results)),
                                 sharex=True, sharey=True, squeeze=False)
        colours = {"file": "tab:green", "unix": "tab:blue", "pty": "tab:orange"}
        for ax, (vmm, b, swaps, t0, rate) in zip(axes[:, 0], results):
            xs = [i * a.bucket for i in range(len(b))]
            ax.step(xs, [x / 1024 for x in b], where="post", color="black", lw=1.0,
                    label="KiB received per %d ms" % round(a.bucket * 1000))
            for kind in kinds:
                first = True
                for s0, s1, k in swaps:
                    if k != kind:
                        continue
                    ax.axvline(s0 - t0, color=colours[kind], lw=0.6, alpha=0.7,
                               label=("change to " + kind) if first else None)
                    first = False
            ax.set_ylim(bottom=0)
            ax.set_ylabel("KiB per %d ms" % round(a.bucket * 1000))
            ax.set_title("%s: demo guest on COM1, chardev-change every %d ms "
                         "(%s), %.1f KiB/s across the changes"
                         % (vmm, round(a.interval * 1000), " -> ".join(kinds), rate / 1024))
            ax.legend(loc="lower right", fontsize=8, ncol=4, framealpha=0.9)
            ax.grid(axis="y", alpha=0.3)
        axes[-1, 0].set_xlabel("seconds (first change at %.1f s)" % (0.5 + a.interval))
        fig.tight_layout()
        fig.savefig(a.out, dpi=110)
        print("wrote " + a.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
