#!/usr/bin/env bash
# Makes the benchmark clip once and prints its path: 20 s of 1080p testsrc2 at 30 fps, libx264 CRF 18,
# a key picture every 30, Annex-B (~25 MB, 600 pictures: larger than the caches). bench/h264.rs and
# bench/gst_throughput.sh both read it, so their figures are about the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
clip=target/bench-clips/1080p-20s.h264
if [ ! -s "$clip" ]; then
  mkdir -p "$(dirname "$clip")"
  ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 -t 20 -pix_fmt yuv420p \
    -c:v libx264 -crf 18 -g 30 -bsf:v h264_mp4toannexb -f h264 "$clip.tmp"
  mv "$clip.tmp" "$clip"
fi
echo "$PWD/$clip"
