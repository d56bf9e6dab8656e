#!/usr/bin/env bash
# A longer run of one fuzz target, with AddressSanitizer, one process (one
# core), keeping its corpus in fuzz/corpus/TARGET (not in git) so runs
# build on each other; seeds come from fuzz/seeds/TARGET.
#
# Usage: scripts/fuzz-long.sh TARGET SECONDS [libFuzzer args...]
# Targets: json_stream qmp chardev_opts telnet websocket uart readline mux.
# Findings go to fuzz/artifacts/TARGET/; replay one with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET artifacts/TARGET/crash-...)
# The full log is written to fuzz/target/long-TARGET.log.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
target=$1
secs=$2
shift 2
source "$(dirname "$0")/fuzz-common.sh"
fuzz_setup

mkdir -p "corpus/$target" target
mapfile -t args < <(fuzz_args "$target")
log=target/long-$target.log
echo "fuzz-long: $target for ${secs}s, log in fuzz/$log" >&2
status=0
cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
  "${args[@]}" -max_total_time="$secs" "$@" >"$log" 2>&1 || status=$?
grep -E '^(#[0-9]+[[:space:]]+DONE|stat::|Done )' "$log" >&2 || true
echo "fuzz-long: corpus/$target holds $(find "corpus/$target" -type f | wc -l) inputs" >&2
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log" >&2
  echo "fuzz-long: $target FAILED (status $status, artifact in fuzz/artifacts/$target/)" >&2
fi
exit "$status"
