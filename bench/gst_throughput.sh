#!/usr/bin/env bash
# GStreamer's H.264 packetize + depacketize throughput on the clip bench/h264.rs uses, net of
# parsing: bytes / (time(h264parse ! rtph264pay ! rtph264depay) - time(h264parse alone)).
# Usage: bench/gst_throughput.sh [CLIP]   (default: bench/clip.sh's 1080p clip, as bench/h264.rs)
set -euo pipefail
cd "$(dirname "$0")/.."
clip=${1:-$(bench/clip.sh)}
bytes=$(stat -c %s "$clip")
best() { # best of 7 wall-clock runs, in seconds
  local b=999
  for _ in 1 2 3 4 5 6 7; do
    local s e
    s=$(date +%s.%N)
    timeout 120 gst-launch-1.0 -q "$@" >/dev/null
    e=$(date +%s.%N)
    b=$(echo "$b $s $e" | awk '{d=$3-$2; print (d<$1)?d:$1}')
  done
  echo "$b"
}
# Both pipelines pin h264parse's output caps, so the parser does the same work in each and the
# difference is the payloader and depayloader alone.
caps=video/x-h264,stream-format=byte-stream,alignment=au
full=$(best filesrc location="$clip" blocksize=1048576 ! h264parse ! "$caps" ! rtph264pay mtu=1200 ! rtph264depay ! fakesink sync=false)
parse=$(best filesrc location="$clip" blocksize=1048576 ! h264parse ! "$caps" ! fakesink sync=false)
echo "$bytes $full $parse" | awk '{net=$2-$3; printf "gstreamer rtph264pay!rtph264depay: %d bytes, full %.3f s, parse-only %.3f s, net %.1f MB/s\n", $1, $2, $3, $1/net/1e6}'
