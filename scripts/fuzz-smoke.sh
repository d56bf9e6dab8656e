#!/usr/bin/env bash
# Builds every fuzz target and runs each briefly from the committed seeds
# (fuzz/seeds/TARGET): a regression check for CI, not a fuzzing campaign
# (see docs/fuzzing.md and scripts/fuzz-long.sh). Exits non-zero when a
# target crashes, fails an invariant, hangs or runs out of memory; the
# input is then in fuzz/artifacts/TARGET/.
#
# Built without sanitizer (--sanitizer none) to stay within about two
# minutes on two cores; the long runs use AddressSanitizer.
#
# Environment: FUZZ_SMOKE_SECONDS per target (default 5).
set -euo pipefail
source "$(dirname "$0")/fuzz-common.sh"
fuzz_setup

secs=${FUZZ_SMOKE_SECONDS:-5}
build=(-O --sanitizer none --target-dir target/smoke)

cargo fuzz build "${build[@]}"
for t in "${FUZZ_TARGETS[@]}"; do
  corpus=$FUZZ_TMP/corpus-$t
  mkdir -p "$corpus"
  mapfile -t args < <(fuzz_args "$t")
  echo "fuzz-smoke: $t for ${secs}s" >&2
  if ! cargo fuzz run "${build[@]}" "$t" "$corpus" "seeds/$t" -- \
    "${args[@]}" -max_total_time="$secs" >"$FUZZ_TMP/$t.log" 2>&1; then
    tail -n 60 "$FUZZ_TMP/$t.log" >&2
    echo "fuzz-smoke: $t FAILED (artifact in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' "$FUZZ_TMP/$t.log" >&2 || true
done
echo "fuzz-smoke: ${#FUZZ_TARGETS[@]} targets ran without a finding" >&2
