#!/usr/bin/env bash
# The C API tests. Builds the release library, compiles every C program in ffi-tests/ with
# -std=c11 -Wall -Wextra -Werror against include/roomkit_media.h, then runs each test three
# times: linked with the static library, built with AddressSanitizer + UBSan, and under
# valgrind. One test also runs linked against the shared library; the header is compiled as
# C++; examples/sip_video_call.c is built through roomkit-media.pc (shared library, staged
# prefix) and answers a call from sipp. Exits non-zero if anything fails; every run is bounded
# by `timeout`.
#
# Usage: ffi-tests/run.sh            (from anywhere; CC and CXX may be overridden)
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-cc}
CXX=${CXX:-c++}
# Cargo's output directory: CARGO_TARGET_DIR when set (relative to the repo, as cargo takes it).
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$PWD/$TARGET ;; esac
OUT=$TARGET/ffi-tests
LIB=$TARGET/release/libroomkit_media.a
CFLAGS=(-std=c11 -Wall -Wextra -Werror -g -Iinclude -Iffi-tests)
LIBS=(-lpthread -ldl -lm -lssl -lcrypto)
TESTS=(rtp_loopback bad_args callback_reentry free_live sip_call sip_phone resilience wideband
  srtp_loopback sip_defer sip_auth_resolver congestion roomkit_gaps sip_dtls)

for tool in "$CC" valgrind timeout sipp pkg-config; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "ffi-tests: $tool is required (Debian: apt-get install valgrind sip-tester)" >&2
    exit 1
  fi
done

echo "== ffi-tests: cargo build --release --lib"
cargo build --release --lib
mkdir -p "$OUT"

failures=()
passed=0
step() { # step NAME COMMAND...: runs a command, records a failure instead of stopping
  local name=$1
  shift
  if "$@"; then
    echo "   ok    $name"
    passed=$((passed + 1))
  else
    echo "   FAIL  $name (exit $?)"
    failures+=("$name")
  fi
}

echo "== ffi-tests: compile"
# No binary of an earlier run may stand in for one that fails to build now.
for t in "${TESTS[@]}"; do rm -f "$OUT/$t" "$OUT/$t-asan"; done
rm -f "$OUT/rtp_loopback-shared" "$OUT/sip_video_call"
step "header as C++" "$CXX" -std=c++11 -Wall -Wextra -Werror -Iinclude -x c++ -fsyntax-only \
  include/roomkit_media.h
for t in "${TESTS[@]}"; do
  step "$t (static)" "$CC" "${CFLAGS[@]}" "ffi-tests/$t.c" "$LIB" "${LIBS[@]}" -o "$OUT/$t"
  # ASan needs the Rust static library linked with the sanitizer runtime; UBSan findings abort.
  step "$t (asan+ubsan)" "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined \
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer "ffi-tests/$t.c" "$LIB" \
    "${LIBS[@]}" -o "$OUT/$t-asan"
done
step "rtp_loopback (shared)" "$CC" "${CFLAGS[@]}" ffi-tests/rtp_loopback.c \
  -L"$TARGET/release" -lroomkit_media -Wl,-rpath,"$TARGET/release" "${LIBS[@]}" \
  -o "$OUT/rtp_loopback-shared"

# roomkit-media.pc, checked against a staged install: prefix/{include,lib} pointing at the tree.
STAGE=$OUT/prefix
mkdir -p "$STAGE/lib"
ln -sfn "$PWD/include" "$STAGE/include"
ln -sf "$TARGET/release/libroomkit_media.so" "$STAGE/lib/libroomkit_media.so"
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
pc() { PKG_CONFIG_PATH=$PWD pkg-config --define-variable=prefix="$STAGE" "$@" roomkit-media; }
step "roomkit-media.pc version is $crate_version" test "$(pc --modversion)" = "$crate_version"
# shellcheck disable=SC2046 # the flags are meant to split
step "sip_video_call example (pkg-config, shared)" "$CC" -std=c11 -Wall -Wextra -Werror \
  examples/sip_video_call.c $(pc --cflags) $(pc --libs) -Wl,-rpath,"$STAGE/lib" \
  -o "$OUT/sip_video_call"

echo "== ffi-tests: run"
for t in "${TESTS[@]}"; do
  [ -x "$OUT/$t" ] && step "$t" timeout 60 "$OUT/$t"
  # detect_leaks: LeakSanitizer checks the Rust side too; no suppressions are needed.
  [ -x "$OUT/$t-asan" ] && step "$t under asan" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1 timeout 120 "$OUT/$t-asan"
  # Only definite leaks fail: Rust's standard library keeps a handle for each foreign thread
  # that calls into it (the C main thread here) until the thread exits, which valgrind reports
  # as "possibly lost" at exit. Valgrind runs code ~20x slower, hence the longer waits.
  [ -x "$OUT/$t" ] && step "$t under valgrind" env RKM_TIMEOUT_SCALE=20 timeout 600 \
    valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    --show-possibly-lost=no "$OUT/$t"
done
[ -x "$OUT/rtp_loopback-shared" ] && step "rtp_loopback (shared)" timeout 60 \
  "$OUT/rtp_loopback-shared"

# The example answers one call from sipp and logs it as a video call, then exits.
example_call() {
  local log=$OUT/sip_video_call.out addr="" i
  timeout 30 "$OUT/sip_video_call" 127.0.0.1:0 127.0.0.1 1 >"$log" 2>&1 &
  local pid=$!
  for i in $(seq 1 100); do
    addr=$(sed -n 's/.* listening on //p' "$log")
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || { cat "$log"; kill "$pid" 2>/dev/null; return 1; }
  # An explicit sipp port: its default (5060) may be held by another test running meanwhile.
  timeout 30 sipp -sf ffi-tests/sipp/uac_av_caller_hangs_up.xml -m 1 -i 127.0.0.1 \
    -p $((20000 + RANDOM % 10000)) -nostdin -timeout 20s -timeout_error "$addr" \
    >"$OUT/sip_video_call.sipp.log" 2>&1 || {
    cat "$log"; kill "$pid" 2>/dev/null; return 1; }
  wait "$pid" || { cat "$log"; return 1; }
  grep -q "video=yes codec=h264" "$log" && grep -q "^hangup " "$log" || { cat "$log"; return 1; }
}
[ -x "$OUT/sip_video_call" ] && step "sip_video_call example answers sipp" example_call

if [ ${#failures[@]} -ne 0 ]; then
  echo "ffi-tests: failed: ${failures[*]}" >&2
  echo "ffi-tests: $passed passed, ${#failures[@]} failed"
  exit 1
fi
echo "ffi-tests: $passed passed, 0 failed"
