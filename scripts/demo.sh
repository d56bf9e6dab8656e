#!/usr/bin/env bash
# The README session, scripted: the demo guest prints numbered lines
# (qchar-demo 0000000001, ...) into a file; over QMP its console then moves
# to a unix socket, to a pty and back to a file while it keeps printing, and
# the numbering continues across the four targets with nothing lost.
#
# Needs: the Rust toolchain, /dev/kvm, python3 (standard library only).
# Usage: scripts/demo.sh            (builds qchar in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p qchar
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
qchar="$target_dir/release/qchar"

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

cmdline=(-nodefaults -display none
    -chardev file,id=con,path=console.log -serial chardev:con
    -qmp unix:qmp.sock,server=on,wait=off
    -fda builtin:demo)
echo "\$ qchar ${cmdline[*]} &"
"$qchar" "${cmdline[@]}" &
pid=$!

python3 - <<'EOF'
import json, os, socket, sys, time

def connect(path):
    for _ in range(500):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            time.sleep(0.01)
    sys.exit("cannot connect to " + path)

q = connect("qmp.sock").makefile("rw")
q.readline()  # greeting

def qmp(name, args=None, show=True, expect_error=False):
    c = {"execute": name}
    if args is not None:
        c["arguments"] = args
    line = json.dumps(c)
    if show:
        print("  -> " + line)
    q.write(line + "\n")
    q.flush()
    while True:
        r = json.loads(q.readline())
        if "event" in r:
            if show and r["event"] in ("STOP", "RESUME", "SHUTDOWN"):
                print("  <- event " + r["event"])
            continue
        if show:
            print("  <- " + json.dumps(r))
        if "error" in r and not expect_error:
            sys.exit("QMP error: " + json.dumps(r))
        return r

qmp("qmp_capabilities", show=False)

targets = []  # (description, bytes)

print("\n[1] the guest prints into console.log")
time.sleep(1.0)

print("\n[2] console -> unix socket console.sock (qchar listens; a backlog keeps")
print("    what is printed before a client connects)")
qmp("chardev-change", {"id": "con", "backend": {"type": "socket", "data": {
    "addr": {"type": "unix", "data": {"path": "console.sock"}},
    "server": True, "wait": False, "x-backlog": 1 << 20}}})
sock = connect("console.sock")
sock.setblocking(False)
sock_data = bytearray()
end = time.time() + 1.0
while time.time() < end:
    try:
        b = sock.recv(65536)
        sock_data += b
    except BlockingIOError:
        time.sleep(0.01)
print("    typing 'hello' into the socket: the guest echoes it")
sock.sendall(b"hello")
while b"qchar-echo hello\r\n" not in sock_data:
    try:
        sock_data += sock.recv(65536)
    except BlockingIOError:
        time.sleep(0.01)

print("\n[3] console -> a new pty")
r = qmp("chardev-change", {"id": "con", "backend": {"type": "pty",
        "data": {"x-backlog": 1 << 20}}})
# The socket is closed now: read what it still holds.
sock.setblocking(True)
while True:
    b = sock.recv(65536)
    if not b:
        break
    sock_data += b
targets.append(("unix socket console.sock", bytes(sock_data)))
pty = os.open(r["return"]["pty"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
pty_data = bytearray()
end = time.time() + 1.0
while time.time() < end:
    try:
        pty_data += os.read(pty, 65536)
    except BlockingIOError:
        time.sleep(0.01)

print("\n[4] console -> console2.log (a pty master that closes discards what its")
print("    slave has not read, so: stop the guest, read the pty dry, then change)")
qmp("stop")
def drain():
    n = 0
    while True:
        try:
            b = os.read(pty, 65536)
        except (BlockingIOError, OSError):
            return n
        if not b:
            return n
        pty_data.extend(b)
        n += len(b)
while True:
    drain()
    # ringbuf-read of a chardev that is no ringbuf pushes its queued
    # output into the backend before it refuses.
    qmp("ringbuf-read", {"device": "con", "size": 1}, show=False, expect_error=True)
    if drain() == 0:
        break
targets.append(("pty " + r["return"]["pty"], bytes(pty_data)))
qmp("chardev-change", {"id": "con", "backend": {"type": "file",
    "data": {"out": "console2.log"}}})
qmp("cont")
time.sleep(0.5)
qmp("stop")
qmp("quit")
os.close(pty)

targets.insert(0, ("file console.log", open("console.log", "rb").read()))
targets.append(("file console2.log", open("console2.log", "rb").read()))

print("\nWhat each target received:")
for name, data in targets:
    print("  %-28s %7d bytes, starts %r, ends %r" % (
        name, len(data), data[:24].decode(), data[-24:].decode()))

stream = b"".join(d for _, d in targets)
expected = 1
echoes = []
for line in stream.split(b"\r\n"):
    if line.startswith(b"qchar-echo "):
        echoes.append(line.decode())
        continue
    want = b"qchar-demo %010d" % expected
    if line == want:
        expected += 1
    elif want.startswith(line):  # the guest was stopped mid-line at the end
        break
    else:
        sys.exit("MISMATCH: expected %r, got %r" % (want, line))
print("\nJoined in change order: lines 1..%d, each exactly once and in order;" % (expected - 1))
print("echo lines: %s" % ", ".join(echoes))
EOF
wait "$pid"
pid=
echo "qchar exited with status 0"
