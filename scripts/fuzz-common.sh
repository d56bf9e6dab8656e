# Shared by fuzz-smoke.sh and fuzz-long.sh (sourced, not run).
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer..., sancov
# passes); only the stable toolchain is guaranteed here, so
# RUSTC_BOOTSTRAP=1 lets stable accept them. libfuzzer-sys builds libFuzzer
# itself with the system C++ compiler.

FUZZ_TARGETS=(json_stream qmp chardev_opts telnet websocket uart readline mux tls_identity)
CARGO_FUZZ_VERSION=0.13.2

fuzz_setup() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
  export RUSTC_BOOTSTRAP=1
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  fi
  if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz: a C++ compiler is needed to build libFuzzer (apt-get install g++)" >&2
    exit 2
  fi
  FUZZ_TMP=$(mktemp -d "${TMPDIR:-/tmp}/qchar-fuzz.XXXXXX")
  # The qmp target's chardevs (files, unix sockets) live here; it empties
  # the directory after every input.
  export QCHAR_FUZZ_TMP=$FUZZ_TMP/sandbox
  mkdir "$QCHAR_FUZZ_TMP"
  trap 'rm -rf "$FUZZ_TMP"' EXIT
}

# Arguments for libFuzzer common to every run of TARGET.
fuzz_args() {
  local target=$1
  local args=(-rss_limit_mb=2048 -timeout=20 -print_final_stats=1)
  case $target in
    qmp | json_stream) args+=(-dict=dicts/qmp.dict) ;;
    chardev_opts) args+=(-dict=dicts/chardev_opts.dict) ;;
    websocket) args+=(-dict=dicts/websocket.dict) ;;
    readline) args+=(-dict=dicts/readline.dict) ;;
    mux) args+=(-dict=dicts/mux.dict) ;;
  esac
  printf '%s\n' "${args[@]}"
}
