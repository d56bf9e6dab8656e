#!/usr/bin/env python3
"""Turns the output of scripts/bench.sh's runs into one markdown table.

Usage: table.py RUN1.log [RUN2.log ...]

Each log holds what the benches printed in one run: the `RESULT` lines of
the relay, many, vs_qemu, bridge and swap_plot steps, and the human lines of
`cargo bench -p qchar --bench serial` (parsed here, that bench predates
the RESULT convention). The table shows the figures of the first log; with
several logs a column gives the range over them of the qchar-vs-peer factor
(qchar's own figure where there is no peer).
"""

import re
import sys

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def duration(text):
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


SERIAL = re.compile(
    r"^(qchar|qemu)\s+file\s+([\d.]+) KiB/s\s+unix socket\s+([\d.]+) KiB/s\s+"
    r"chardev-change median (\S+) p99 (\S+) max (\S+)")


def parse(path):
    """{(kind, who): {key: float}}"""
    out = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = SERIAL.match(line)
        if m:
            who = m.group(1)
            out[("serial", who)] = {
                "file_b_s": float(m.group(2)) * 1024,
                "unix_b_s": float(m.group(3)) * 1024,
                "change_p50_us": duration(m.group(4)) * 1e6,
                "change_p99_us": duration(m.group(5)) * 1e6,
            }
            continue
        if not line.startswith("RESULT "):
            continue
        parts = line.split()
        kind = parts[1]
        rest = parts[2:]
        # `RESULT relay qchar=.. socat=..` has no "who" field.
        if rest and "=" not in rest[0]:
            who, rest = rest[0], rest[1:]
        else:
            who = ""
        vals = {}
        for kv in rest:
            k, v = kv.split("=", 1)
            vals[k] = float(v)
        out[(kind, who)] = vals
    return out


# (number, measure, unit, higher_is_better, qchar getter, peer name,
#  peer getter, target ratio or None). A getter takes a parsed run and
#  returns a number or None.
def g(kind, who, key, scale=1.0):
    def get(r):
        v = r.get((kind, who), {}).get(key)
        return None if v is None else v * scale
    return get


ROWS = [
    ("1a", "guest serial output, file backend", "bytes/s", True,
     g("serial", "qchar", "file_b_s"), "QEMU", g("serial", "qemu", "file_b_s"), 1.0),
    ("1b", "guest serial output, unix socket backend", "bytes/s", True,
     g("serial", "qchar", "unix_b_s"), "QEMU", g("serial", "qemu", "unix_b_s"), 1.0),
    ("2a", "chardev-change while the guest prints, median", "us", False,
     g("serial", "qchar", "change_p50_us"), "QEMU", g("serial", "qemu", "change_p50_us"), 1.0),
    ("2b", "chardev-change while the guest prints, p99", "us", False,
     g("serial", "qchar", "change_p99_us"), "QEMU", g("serial", "qemu", "change_p99_us"), 1.0),
    ("3a", "QMP query-status round trip, median", "us", False,
     g("qmp_rtt", "qchar", "p50_us"), "QEMU", g("qmp_rtt", "qemu", "p50_us"), 1.0),
    ("3b", "QMP query-status round trip, p99", "us", False,
     g("qmp_rtt", "qchar", "p99_us"), "QEMU", g("qmp_rtt", "qemu", "p99_us"), 1.0),
    ("3c", "QMP bulk input, streamed query-status", "MB/s", True,
     g("qmp_bulk", "qchar", "stream_mb_s"), "QEMU", g("qmp_bulk", "qemu", "stream_mb_s"), 1.0),
    ("3d", "QMP bulk input, one large ringbuf-write", "MB/s", True,
     g("qmp_bulk", "qchar", "ringbuf_mb_s"), "QEMU", g("qmp_bulk", "qemu", "ringbuf_mb_s"), 1.0),
    ("4", "idle resident memory (VmRSS)", "KiB", False,
     g("idle_rss", "qchar", "kib"), "QEMU", g("idle_rss", "qemu", "kib"), 1.0),
    ("5a", "relay unix socket -> chardev -> frontend -> chardev -> unix socket", "MiB/s", True,
     g("relay", "", "qchar"), "socat", g("relay", "", "socat"), 0.9),
    ("5b", "same, against socat with 64 KiB buffers (-b 65536)", "MiB/s", True,
     g("relay", "", "qchar"), "socat -b 65536", g("relay", "", "socat_b65536"), None),
    ("6a", "10,000 chardev-add over QMP, total time", "s", False,
     g("many_qmp", "qchar", "add_s"), "QEMU", g("many_qmp", "qemu", "add_s"), 1.0),
    ("6b", "one query-chardev of 10,000 chardevs", "ms", False,
     g("many_qmp", "qchar", "query_ms"), "QEMU", g("many_qmp", "qemu", "query_ms"), 1.0),
    ("6c", "RSS per chardev (QMP chardev-add, process growth / 10,000)", "bytes", False,
     g("many_qmp", "qchar", "bytes_per_chardev"), "QEMU",
     g("many_qmp", "qemu", "bytes_per_chardev"), 1.0),
    ("6d", "10,000 chardevs through the library (Registry::add), total time", "ms", False,
     g("many_lib", "qchar", "add_s", 1000.0), None, None, None),
    ("6e", "one Registry::query of 10,000 chardevs", "ms", False,
     g("many_lib", "qchar", "query_ms"), None, None, None),
    ("6f", "RSS per chardev through the library", "bytes", False,
     g("many_lib", "qchar", "bytes_per_chardev"), None, None, None),
    ("7", "guest output across a chardev-change every 100 ms (file/unix/pty)", "bytes/s", True,
     g("swaps", "qchar", "rate_b_s"), "QEMU", g("swaps", "qemu", "rate_b_s"), None),
    ("8a", "console bridge (x-bridge) VM socket -> user socket, throughput", "MiB/s", True,
     g("bridge", "", "qchar"), "socat", g("bridge", "", "socat"), 1.0),
    ("8b", "same, against socat -b 65536", "MiB/s", True,
     g("bridge", "", "qchar"), "socat -b 65536", g("bridge", "", "socat_b65536"), None),
    ("8c", "console bridge, one byte there and back, median", "us", False,
     g("bridge_rtt", "", "qchar_p50_us"), "socat", g("bridge_rtt", "", "socat_p50_us"), 1.0),
    ("8d", "console bridge, one byte there and back, p99", "us", False,
     g("bridge_rtt99", "", "qchar_p99_us"), "socat", g("bridge_rtt99", "", "socat_p99_us"), None),
    ("9a", "TLS handshake to a monitor's first byte (verify-peer, authz), median", "us", False,
     g("tls_handshake", "qchar", "p50_us"), "QEMU", g("tls_handshake", "qemu", "p50_us"), 1.0),
    ("9b", "same, p99", "us", False,
     g("tls_handshake", "qchar", "p99_us"), "QEMU", g("tls_handshake", "qemu", "p99_us"), 1.0),
    ("9c", "guest serial output, TLS socket backend", "bytes/s", True,
     g("tls_serial", "qchar", "rate_b_s"), "QEMU", g("tls_serial", "qemu", "rate_b_s"), 1.0),
    ("9d", "same, the socket without TLS (what TLS costs)", "bytes/s", True,
     g("tls_serial", "qchar", "plain_b_s"), "QEMU", g("tls_serial", "qemu", "plain_b_s"), None),
    ("10a", "relay unix socket -> chardev -> frontend -> TLS chardev -> TLS client", "MiB/s", True,
     g("relay_tls", "", "qchar"), "socat OpenSSL", g("relay_tls", "", "socat_openssl"), 0.9),
    ("10b", "same relay, qchar over TLS against qchar over plain TCP", "MiB/s", True,
     g("relay_tls", "", "qchar"), "qchar, plain TCP", g("relay_tls", "", "qchar_plain_tcp"), None),
]


def fmt(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return "{:,.0f}".format(x)
    if x >= 10:
        return "{:.1f}".format(x)
    return "{:.2f}".format(x)


def score(higher, q, p):
    """qchar's figure relative to the peer's, >1 meaning qchar is better."""
    if q is None or p is None or q == 0 or p == 0:
        return None
    return q / p if higher else p / q


def main():
    runs = [parse(p) for p in sys.argv[1:]]
    if not runs:
        sys.exit(__doc__)
    first = runs[0]
    multi = len(runs) > 1
    head = ["#", "measure", "unit", "qchar", "peer", "peer value",
            "qchar vs peer (x better)"]
    if multi:
        head.append("range over %d runs" % len(runs))
    head += ["target", "met"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(" --- " for _ in head) + "|")
    for num, measure, unit, higher, qg, peer, pg, target in ROWS:
        q = qg(first)
        p = pg(first) if pg else None
        s = score(higher, q, p)
        row = [num, measure, unit, fmt(q), peer or "-", fmt(p) if pg else "-",
               ("%.2f" % s) if s is not None else "-"]
        if multi and not pg:
            # No peer: the range of qchar's own figure.
            vals = [v for v in (qg(r) for r in runs) if v is not None]
            row.append("%s - %s %s" % (fmt(min(vals)), fmt(max(vals)), unit) if vals else "-")
        elif multi:
            all_s = [score(higher, qg(r), pg(r)) for r in runs]
            all_s = [x for x in all_s if x is not None]
            row.append("%.2f - %.2f" % (min(all_s), max(all_s)) if len(all_s) > 1 else
                       "(1 run)" if all_s else "-")
        if target is None:
            row += ["-", "-"]
        else:
            row.append(">= peer" if target == 1.0 else ">= %.0f%% of peer" % (target * 100))
            if s is None:
                row.append("n/a")
            elif multi:
                worst = min(all_s)
                row.append("yes" if worst >= target else
                           ("in %d of %d runs" % (sum(1 for x in all_s if x >= target),
                                                  len(all_s))))
            else:
                row.append("yes" if s >= target else "no")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
