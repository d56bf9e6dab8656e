#!/usr/bin/env bash
# qchar against its peers, on this machine, in one go: builds the release
# binaries, runs the benches below, and prints one markdown table (the one
# in docs/performance.md).
#
#   rows 1, 2  QCHAR_BENCH_CHANGES=1000 cargo bench -p qchar --bench serial
#              guest serial output over file / unix socket and
#              chardev-change latency while the guest prints, qchar vs QEMU
#   rows 3, 4, 6a-c
#              cargo bench -p qchar --bench vs_qemu
#              QMP round trip and bulk input, idle RSS, 10,000 chardev-add
#              over QMP, qchar vs QEMU with the same options and client
#   row 5      cargo bench -p qchar-chardev --bench relay
#              unix socket -> chardev -> relay frontend -> chardev -> unix
#              socket, vs socat UNIX-LISTEN:a UNIX-LISTEN:b, same client
#   row 6d-f   cargo bench -p qchar-chardev --bench many
#              10,000 chardevs through the library
#   row 8      cargo bench -p qchar --bench bridge
#              the console bridge (-machine none, -object x-bridge) between
#              a VM's console socket and a user socket, vs socat
#              UNIX-CONNECT:vm UNIX-LISTEN:user, same sockets, same client
#   rows 9a-d  cargo bench -p qchar --bench tls
#              TLS handshake time to a monitor's first byte and guest
#              serial output over a TLS socket chardev, qchar vs QEMU
#   rows 10a-b  (in the relay bench) the relay with chardev b over TLS,
#              vs socat -b 65536 UNIX-LISTEN:a OPENSSL-LISTEN:port
#   row 7      scripts/perf/swap_plot.py (first run only)
#              guest output over time with a chardev-change every 100 ms;
#              writes the plot (docs/throughput-over-swaps.png with --docs)
#
# Usage: scripts/bench.sh [--runs N] [--docs] [--no-plot]
#   --runs N   repeat every bench N times (default 1); the table then gives
#              the first run's figures and the range of each ratio
#   --docs     write the plot to docs/throughput-over-swaps.png
#   --no-plot  skip the plot (and matplotlib)
# Needs: the Rust toolchain, /dev/kvm, python3; qemu-system-x86_64 and
# socat for the peer columns (the benches say so and skip them if absent);
# matplotlib (installed with pip --user when missing) for the plot.
# Logs of each run stay in $BENCH_OUT (default: a temporary directory,
# printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

runs=1
docs=0
plot=1
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    --docs) docs=1; shift ;;
    --no-plot) plot=0; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

# 1,000 chardev-changes (the serial bench's default is 200), so that p99 is
# the tenth-worst sample and not the second: it moves less with the load of
# a shared machine.
export QCHAR_BENCH_CHANGES=${QCHAR_BENCH_CHANGES:-1000}

out=${BENCH_OUT:-$(mktemp -d -t qchar-bench.XXXXXX)}
mkdir -p "$out"

# Every step runs in a process group of its own (setsid), so that on
# failure or interrupt the step and everything it started (qchar, QEMU,
# socat) are stopped together.
step_pid=
cleanup() {
    local rc=$?
    if [ -n "$step_pid" ] && kill -0 "$step_pid" 2>/dev/null; then
        kill -TERM -- "-$step_pid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$step_pid" 2>/dev/null || true
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs "$@" as its own process group; its output goes to $log, its RESULT
# lines to the terminal as well.
step() {
    echo "bench.sh: $*" >&2
    local steplog="$out/step.log"
    setsid "$@" >"$steplog" 2>&1 &
    step_pid=$!
    local rc=0
    wait "$step_pid" || rc=$?
    step_pid=
    cat "$steplog" >>"$log"
    grep -E '^(RESULT|qchar |qemu )' "$steplog" >&2 || true
    if [ $rc -ne 0 ]; then
        echo "bench.sh: '$*' failed ($rc); its output is in $log" >&2
        tail -n 30 "$steplog" >&2
        exit $rc
    fi
}

echo "bench.sh: building release binaries" >&2
cargo build --release -q -p qchar
cargo bench -q --no-run -p qchar -p qchar-chardev
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
qchar_bin="$target_dir/release/qchar"

have_qemu=0
command -v qemu-system-x86_64 >/dev/null && have_qemu=1
if [ $plot -eq 1 ] && ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "bench.sh: installing matplotlib (pip --user) for the plot" >&2
    python3 -m pip install --user -q matplotlib
fi

logs=()
for run in $(seq 1 "$runs"); do
    log="$out/run$run.log"
    : >"$log"
    logs+=("$log")
    echo "bench.sh: run $run of $runs, log $log" >&2
    {
        echo "# run $run, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >>"$log"
    step cargo bench -q -p qchar --bench serial
    step cargo bench -q -p qchar --bench vs_qemu
    step cargo bench -q -p qchar --bench tls
    step cargo bench -q -p qchar-chardev --bench relay
    step cargo bench -q -p qchar-chardev --bench many
    step cargo bench -q -p qchar --bench bridge
    if [ $plot -eq 1 ] && [ "$run" -eq 1 ]; then
        png="$out/throughput-over-swaps.png"
        [ $docs -eq 1 ] && png="$root/docs/throughput-over-swaps.png"
        qemu_flag=()
        [ $have_qemu -eq 1 ] && qemu_flag=(--qemu)
        step python3 scripts/perf/swap_plot.py --qchar "$qchar_bin" "${qemu_flag[@]}" --out "$png"
    fi
    echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
done

echo
echo "qchar vs peers, $(date -u '+%Y-%m-%d'), $runs run(s); logs in $out"
echo
python3 scripts/perf/table.py "${logs[@]}"
