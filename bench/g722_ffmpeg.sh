#!/usr/bin/env bash
# G.722 encode and decode cost, ffmpeg's next to ours, on the same 60 s of 16 kHz speech-like audio.
#
# ffmpeg: `ffmpeg -benchmark` user CPU time (utime) to encode the clip (s16le -> g722) and to decode
# it (g722 -> s16le), both into `-f null`, the clip looped LOOPS times so start-up is a small share;
# best of RUNS. The same pipeline with `-c:a pcm_s16le` instead of the codec is measured too and
# subtracted, so the "net" figure is the codec alone. Then `cargo bench --bench audio` measures ours
# in the same run (skip with --ffmpeg-only).
#
# Real-time factor = audio seconds / CPU seconds. Calls per core = audio seconds per CPU second
# spent on one encode plus one decode (both directions of a call) = 1 / (1/rtf_enc + 1/rtf_dec).
#
# Usage: bench/g722_ffmpeg.sh [--ffmpeg-only]
#        bench/g722_ffmpeg.sh --make-clip PATH   (writes the shared clip; bench/audio.rs calls this)
set -euo pipefail
cd "$(dirname "$0")/.."

make_clip() { # 60 s, 16 kHz mono s16le: band-limited pink noise with syllable-rate modulation
  mkdir -p "$(dirname "$1")"
  timeout 120 ffmpeg -nostdin -v error -y -f lavfi \
    -i "anoisesrc=color=pink:sample_rate=16000:amplitude=0.5:seed=1,highpass=f=100,lowpass=f=7000,tremolo=f=4:d=0.8" \
    -t 60 -ar 16000 -ac 1 -f s16le "$1"
}

if [ "${1:-}" = "--make-clip" ]; then
  make_clip "$2"
  exit 0
fi

clip=target/bench-clips/speech-16k-60s.raw
coded=target/bench-clips/speech-16k-60s.g722
[ -f "$clip" ] || make_clip "$clip"
timeout 120 ffmpeg -nostdin -v error -y -f s16le -ar 16000 -ac 1 -i "$clip" -c:a g722 -f g722 "$coded"

LOOPS=${LOOPS:-20}
RUNS=${RUNS:-7}
seconds=$((60 * LOOPS))

utime() { # best user CPU seconds of RUNS runs of: ffmpeg -benchmark ARGS
  local b=999
  for _ in $(seq "$RUNS"); do
    local u
    u=$(timeout 300 ffmpeg -nostdin -hide_banner -benchmark -stream_loop $((LOOPS - 1)) "$@" -f null - 2>&1 |
      sed -n 's/.*utime=\([0-9.]*\)s.*/\1/p' | tail -1)
    b=$(echo "$b $u" | awk '{print ($2<$1)?$2:$1}')
  done
  echo "$b"
}

enc=$(utime -f s16le -ar 16000 -ac 1 -i "$clip" -c:a g722)
enc_base=$(utime -f s16le -ar 16000 -ac 1 -i "$clip" -c:a pcm_s16le)
dec=$(utime -f g722 -i "$coded" -c:a pcm_s16le)
dec_base=$(utime -f s16le -ar 16000 -ac 1 -i "$clip" -c:a pcm_s16le)

echo "ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3): ${seconds} s of audio, best of $RUNS, user CPU seconds"
echo "$seconds $enc $enc_base $dec $dec_base" | awk '{
  s=$1; ne=$2-$3; nd=$4-$5;
  printf "  encode: %.3f s (pcm pass-through %.3f s, net %.3f s) -> real-time factor %.0f gross, %.0f net\n", $2, $3, ne, s/$2, s/ne;
  printf "  decode: %.3f s (pcm pass-through %.3f s, net %.3f s) -> real-time factor %.0f gross, %.0f net\n", $4, $5, nd, s/$4, s/nd;
  printf "  calls per core (one encode + one decode): %.0f gross, %.0f net\n", s/($2+$4), s/(ne+nd);
}'

if [ "${1:-}" != "--ffmpeg-only" ]; then
  cargo bench --bench audio
fi
