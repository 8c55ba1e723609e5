#!/usr/bin/env bash
# ffmpeg's libopus on the input bench/opus.rs uses (10 s, 48 kHz mono, speech-like): encode
# (VoIP, 32 kbit/s, 20 ms frames, in-band FEC with 10 % expected loss, like our encoder) and
# decode (libopus, and ffmpeg's own opus decoder), timed with `ffmpeg -benchmark` (user CPU,
# best of 5, one thread). The same figures as bench/opus.rs: µs per 20 ms frame, real-time
# factor, and calls per core = 20 ms / (encode + decode per frame). Both timings include
# ffmpeg's file reading, Ogg (de)muxing and writing; the "pass-through" line measures that
# overhead alone (reading the raw input and discarding it), to subtract if wanted.
#
# Usage: bench/opus_ffmpeg.sh [--make-input-only]   (after `cargo bench --bench opus`, which
# writes the Ogg file of our packets that this script also decodes)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/bench-clips
input=$dir/speechlike-48k-10s.raw
seconds=10
mkdir -p "$dir"
if [ ! -f "$input" ]; then
  # A voiced tone at ~150 Hz with vibrato and two harmonics, a syllable-rate (4 Hz) envelope,
  # and a little noise: enough structure for the speech coder to do real work.
  expr='(0.30*sin(2*PI*150*t+2*sin(2*PI*5*t))+0.15*sin(2*PI*450*t+6*sin(2*PI*5*t))'
  expr+='+0.08*sin(2*PI*1250*t+3*sin(2*PI*7*t)))*(0.55+0.45*sin(2*PI*4*t))+0.02*(random(0)-0.5)'
  timeout 60 ffmpeg -nostdin -v error -y -f lavfi -i "aevalsrc=${expr}:s=48000:d=${seconds}" \
    -ac 1 -f s16le "$input.partial"
  mv "$input.partial" "$input"
fi
# ffmpeg's packets, which bench/opus.rs also decodes with our decoder.
opus=$dir/ffmpeg-libopus-32k.opus
enc_args=(-c:a libopus -b:a 32k -application voip -frame_duration 20 -vbr on -fec 1
  -packet_loss 10)
if [ ! -f "$opus" ]; then
  timeout 120 ffmpeg -nostdin -v error -y -f s16le -ar 48000 -ac 1 -i "$input" \
    "${enc_args[@]}" -f ogg "$opus.partial"
  mv "$opus.partial" "$opus"
fi
[ "${1:-}" = "--make-input-only" ] && exit 0

# Each timed run goes through the input 5 times (-stream_loop 4): 50 s of audio, so that the
# user time is well above the clock's resolution.
loops=5
frames=$((seconds * 50 * loops))
raw_in=(-f s16le -ar 48000 -ac 1 -stream_loop $((loops - 1)) -i "$input")
best_utime() { # best user-CPU seconds of 5 runs of ffmpeg -benchmark with the given arguments
  local best=999 u
  for _ in 1 2 3 4 5; do
    u=$(timeout 120 ffmpeg -nostdin -hide_banner -benchmark -threads 1 -y "$@" 2>&1 >/dev/null |
      sed -n 's/^bench: utime=\([0-9.]*\)s.*/\1/p')
    best=$(echo "$best $u" | awk '{print ($2<$1)?$2:$1}')
  done
  echo "$best"
}
report() { # report NAME UTIME
  echo "$2" | awk -v name="$1" -v f="$frames" -v s="$((seconds * loops))" \
    '{printf "%-34s %7.3f s user: %6.1f µs/frame, x%.0f real time\n", name, $1, $1/f*1e6, s/$1}'
}


echo "$(ffmpeg -hide_banner -version | head -n1); libopus $(pkg-config --modversion opus 2>/dev/null || echo '?') (system)"
passthrough=$(best_utime "${raw_in[@]}" -f null -)
encode=$(best_utime "${raw_in[@]}" "${enc_args[@]}" -f ogg /dev/null)
opus_in=(-stream_loop $((loops - 1)) -i "$opus")
decode=$(best_utime -c:a libopus "${opus_in[@]}" -f null -)
decode_native=$(best_utime -c:a opus "${opus_in[@]}" -f null -)
report "pass-through (read raw, discard)" "$passthrough"
report "encode libopus" "$encode"
report "decode libopus" "$decode"
report "decode ffmpeg opus (native)" "$decode_native"
# Our encoder's packets, which bench/opus.rs writes as Ogg Opus: ffmpeg's libopus decoding the
# very packets our decode benchmark decodes.
ours=$dir/roomkit-opus-32k.opus
if [ -f "$ours" ]; then
  report "decode libopus, our packets" "$(best_utime -c:a libopus -stream_loop $((loops - 1)) -i "$ours" -f null -)"
else
  echo "(run cargo bench --bench opus first to time ffmpeg decoding our packets too)"
fi
echo "$encode $decode $passthrough" | awk -v f="$frames" '{
  printf "calls per core (libopus encode + decode): %.0f; net of pass-through: %.0f\n",
    0.020 / (($1 + $2) / f), 0.020 / (($1 + $2 - 2 * $3) / f) }'
