#!/bin/sh
# libsrtp against rtp::srtp, back to back on the same machine: bench/libsrtp.c (built here with
# `cc`), then bench/srtp.rs's summary, measured the same way (median of 15 rounds, thread CPU
# time and wall time per protect + unprotect). Prints both and, per suite and size, libsrtp's CPU
# time over ours (above 1: ours is cheaper).
#
# Which libsrtp: by default the system's libsrtp2 (Debian: `apt-get install libsrtp2-dev`;
# Debian builds it on NSS). LIBSRTP_SRC=DIR instead builds the libsrtp 2.x source tree in DIR
# with `./configure --enable-openssl` (OpenSSL's libcrypto: `libssl-dev`) once and links that
# static library. Either is needed only for this comparison, never to build roomkit-media.
#
# Run from anywhere: bench/libsrtp.sh    or    LIBSRTP_SRC=~/libsrtp-2.5.0 bench/libsrtp.sh
set -eu
cd "$(dirname "$0")/.."
out="${TMPDIR:-/tmp}/roomkit-libsrtp-bench.$$"
trap 'rm -rf "$out" "$out.c" "$out.rs" "$out.inc"' EXIT
if [ -n "${LIBSRTP_SRC:-}" ]; then
    if [ ! -f "$LIBSRTP_SRC/libsrtp2.a" ]; then
        (cd "$LIBSRTP_SRC" && ./configure --enable-openssl >/dev/null && make libsrtp2.a >/dev/null)
    fi
    # The public headers, where `#include <srtp2/srtp.h>` finds them.
    mkdir -p "$out.inc/srtp2"
    cp "$LIBSRTP_SRC/include/srtp.h" "$LIBSRTP_SRC"/crypto/include/auth.h \
        "$LIBSRTP_SRC"/crypto/include/cipher.h "$LIBSRTP_SRC"/crypto/include/crypto_types.h \
        "$out.inc/srtp2/"
    cc -O2 -Wall -Wextra -I"$out.inc" -o "$out" bench/libsrtp.c "$LIBSRTP_SRC/libsrtp2.a" -lcrypto
    echo "libsrtp: built from $LIBSRTP_SRC with OpenSSL $(openssl version | cut -d' ' -f2)"
else
    cc -O2 -Wall -Wextra -o "$out" bench/libsrtp.c -lsrtp2
    echo "libsrtp: the system's, linking $(ldd "$out" | awk '/libsrtp2|libcrypto|libnss3/ {print $1}' | tr '\n' ' ')"
fi
echo "load before: $(cat /proc/loadavg)"
"$out" | tee "$out.c"
SRTP_BENCH_SUMMARY_ONLY=1 cargo bench --bench srtp 2>/dev/null | grep '^ours\|^buffers\|^load' | tee "$out.rs"
echo "load after: $(cat /proc/loadavg)"
echo "libsrtp CPU / ours CPU per protect + unprotect:"
awk '$1 == "libsrtp" && NF == 5 { split($4, c, "="); lib[$2 " " $3] = c[2] }
     $1 == "ours" { split($4, c, "="); k = $2 " " $3
                    if (k in lib) printf "  %-23s %5d  libsrtp %6d ns  ours %6d ns  ratio %.2f\n",
                                         $2, $3, lib[k], c[2], lib[k] / c[2] }' "$out.c" "$out.rs"
