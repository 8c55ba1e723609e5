#!/usr/bin/env bash
# Call setup rate of `roomkit-media serve` under sipp load, at ramped rates.
#
#   bench/sip_load.sh [RATE ...]            default rates: 500 1000 2000 3000
#   CALLS=20000 LIMIT=2000 SCENARIO=tests/sipp/audio_only.xml bench/sip_load.sh 2000
#   TRANSPORT=tcp bench/sip_load.sh 2000    SIP over TCP (sipp -t t1: one connection)
#   KAMAILIO="udp tcp tls" bench/sip_load.sh 1000 2000 3000
#                                           sipp (UDP) -> Kamailio -> serve, Kamailio relaying
#                                           over UDP, TCP and TLS in turn (same run, same path)
#   PATHS="udp tcp kam-udp kam-tcp kam-tls" bench/sip_load.sh 1000 2000 3000
#                                           direct and through Kamailio, in one run
#   PATHS="sipp udp" SCENARIO=tests/sipp/av_call_or_503.xml bench/sip_load.sh 1000 2000 3000 5000
#                                           the overload table: sipp<->sipp (path `sipp`: sipp
#                                           answering with bench/sipp/av_uas.xml, no media, the
#                                           ceiling of this machine at that moment), then serve
#   SERVE_ARGS="--overload-backlog 0" ...   extra `serve` options
#   IO_THREADS=0 ...                        `serve --io-threads` (default: the number of cores,
#                                           the README's setting for a server with many calls;
#                                           0 is one thread per stream, the engine's default)
#
# With a scenario that takes a 503 as an outcome (tests/sipp/av_call_or_503.xml), calls refused by
# overload control end cleanly: `ok` then splits into `answered` (200) and `refused` (503, from
# serve's closing stats line), and `timeouts` counts calls sipp failed for an unanswered request.
# `goodput/s` is answered calls per second of wall time; `load1` the 1-minute load average at the
# end of the rate (the machine is shared).
#
# Debian's sipp 3.6.1 is built without TLS (`-t l1` is refused), so TLS call setups are
# measured with Kamailio 5.6 (tests/kamailio/relay.cfg, its tls module on OpenSSL) as the TLS
# client in front of `serve --sip-tls`; the UDP and TCP hops through the same proxy are the fair
# comparison. Needs kamailio, kamailio-tls-modules, and openssl for the test certificate.
#
# Each rate gets a fresh release-built `serve` (and Kamailio); sipp places CALLS calls (INVITE,
# 200, ACK, BYE, 200 with the scenario's pause set to 0) starting RATE per second (sipp ramps up
# by -rp), at most LIMIT at once. Every answered call creates real engine sessions (sockets,
# receive threads). Prints, per path and rate: successful and failed calls, wall time and
# achieved calls/s. The figures are in the README's SIP load table.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v sipp >/dev/null || { echo "sipp is not installed (apt-get install sip-tester)" >&2; exit 2; }
cargo build --release --quiet --bin roomkit-media
# sipp's own transport when it talks to serve directly: udp (default) or tcp.
TRANSPORT=${TRANSPORT:-udp}
case "$TRANSPORT" in
  udp | tcp) ;;
  *) echo "TRANSPORT is udp or tcp" >&2; exit 2 ;;
esac
# Through Kamailio instead: the hop transports (Kamailio -> serve) to measure, in this order.
KAMAILIO=${KAMAILIO:-}
# Or every path to measure, direct and through Kamailio: PATHS="udp tcp kam-udp kam-tcp kam-tls".
MODULES=/usr/lib/x86_64-linux-gnu/kamailio/modules/
if [ -n "${PATHS:-}" ]; then
  read -r -a PATHS <<<"$PATHS"
else
  PATHS=()
  for t in $KAMAILIO; do PATHS+=("kam-$t"); done
  [ ${#PATHS[@]} -eq 0 ] && PATHS=("$TRANSPORT")
fi
uses_kamailio=0
for p in "${PATHS[@]}"; do
  case "$p" in
    udp | tcp | sipp) ;;
    kam-udp | kam-tcp | kam-tls) uses_kamailio=1 ;;
    *) echo "paths are sipp, udp, tcp, kam-udp, kam-tcp or kam-tls (KAMAILIO lists udp, tcp, tls)" >&2; exit 2 ;;
  esac
done
# Every path of a run places the same calls. Through Kamailio, a call's 180 may arrive after its
# 200 (its UDP workers relay them in parallel): bench/sipp/proxied_call.xml takes that.
if [ "$uses_kamailio" = 1 ]; then
  SCENARIO=${SCENARIO:-bench/sipp/proxied_call.xml}
else
  SCENARIO=${SCENARIO:-tests/sipp/audio_only.xml}
fi
if [ "$uses_kamailio" = 1 ]; then
  command -v kamailio >/dev/null || { echo "kamailio is not installed" >&2; exit 2; }
  [ -e "$MODULES/tls.so" ] \
    || { echo "Kamailio's tls module is missing (apt-get install kamailio-tls-modules)" >&2; exit 2; }
fi
BIN=${CARGO_TARGET_DIR:-target}/release/roomkit-media
CALLS=${CALLS:-20000}
LIMIT=${LIMIT:-2000}
RATES=("$@")
[ ${#RATES[@]} -eq 0 ] && RATES=(500 1000 2000 3000)
WORK=$(mktemp -d)
kam_pid=""
serve_pid=""
cleanup() {
  if [ -n "$kam_pid" ]; then kill -TERM "$kam_pid" 2>/dev/null || true; fi
  if [ -n "$serve_pid" ]; then kill -TERM "$serve_pid" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Exit 0 once something holds UDP port $1 on loopback.
udp_bound() {
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)' "$1"
}

if [ "$uses_kamailio" = 1 ]; then
  # A CA and a certificate for 127.0.0.1 it signed: serve presents it, Kamailio verifies it.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sip_load test CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$WORK/key.pem" \
    -out "$WORK/cert.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san"
  openssl x509 -req -in "$WORK/cert.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/san" -out "$WORK/cert.pem" 2>/dev/null
  printf '%s\n' "[server:default]" "method = TLSv1.2+" "certificate = $WORK/cert.pem" \
    "private_key = $WORK/key.pem" "" "[client:default]" "method = TLSv1.2+" \
    "verify_certificate = yes" "require_certificate = yes" "ca_list = $WORK/ca.pem" >"$WORK/tls.cfg"
fi

SERVE_ARGS=${SERVE_ARGS:-}
# sipp's socket buffers (its default, 64 KB, holds a few dozen answers with SDP: a burst of them
# while sipp waits for a core overflowed it, and the calls whose 200 and its retransmissions
# were dropped there timed out in sipp although serve had answered them within 250 ms).
SIPP_BUF=(-buff_size "${SIPP_BUFFER:-4194304}")
IO_THREADS=${IO_THREADS:-$(nproc)}
# The RTP port range of `serve` (an A/V call takes two RTP/RTCP pairs while it runs and for the
# close linger after it).
RTP_PORTS=${RTP_PORTS:-20000-30000}
echo "# $(nproc) cores; serve --io-threads $IO_THREADS; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-6s %-7s %-8s %-8s %-7s %-8s %-8s %-9s %-8s %-6s %s\n' path rate calls answered refused \
  failed timeouts seconds goodput/s calls/s load1 "503s: backlog/setup/capacity"
# Rate by rate, the paths in turn: a machine whose load drifts during the run weighs on every
# path of a rate alike.
for rate in "${RATES[@]}"; do
  for path in "${PATHS[@]}"; do
    port=$(free_port)
    # Stream listeners on the UDP port's number (free for TCP too in practice on loopback).
    listen=()
    case "$path" in
      tcp | kam-tcp) listen=(--sip-tcp "127.0.0.1:$port") ;;
      kam-tls) listen=(--sip-tls "127.0.0.1:$port" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem") ;;
    esac
    : >"$WORK/serve.log"
    if [ "$path" = sipp ]; then
      timeout 900 sipp -sf bench/sipp/av_uas.xml -t u1 -i 127.0.0.1 -p "$port" -nostdin "${SIPP_BUF[@]}" \
        >/dev/null 2>&1 </dev/null &
      serve_pid=$!
      for _ in $(seq 50); do udp_bound "$port" && break; sleep 0.1; done
    else
      # shellcheck disable=SC2086 # SERVE_ARGS is a list of options
      timeout 900 "$BIN" serve --sip "127.0.0.1:$port" "${listen[@]}" --rtp-ip 127.0.0.1 \
        --rtp-ports "$RTP_PORTS" --io-threads "$IO_THREADS" --quiet-frames $SERVE_ARGS \
        >"$WORK/serve.log" 2>&1 &
      serve_pid=$!
      for _ in $(seq 50); do grep -q listening "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
    fi
    target=$port
    sipp_t=u1
    [ "$path" = tcp ] && sipp_t=t1
    if [ "${path#kam-}" != "$path" ]; then
      # Kamailio on ports of its own, relaying every call to serve over the hop's transport;
      # its per-message log lines (L_DBG) stay below its log level.
      target=$(free_port)
      sed -e "s|@PORT@|$target|g; s|@TCP_PORT@|$(free_port)|g; s|@TLS_PORT@|$(free_port)|g" \
        -e "s|@RUNDIR@|$WORK|g; s|@MODULES@|$MODULES|g; s|@DEBUG@|1|g; s|@CHILDREN@|4|g" \
        -e "s|@TARGET@|sip:127.0.0.1:$port;transport=${path#kam-}|g; s|@LOG@|L_DBG|g" \
        tests/kamailio/relay.cfg >"$WORK/kamailio.cfg"
      timeout -k 10 900 kamailio -DD -E -m 1024 -M 16 -f "$WORK/kamailio.cfg" -P "$WORK/k.pid" \
        >/dev/null 2>"$WORK/kamailio.log" &
      kam_pid=$!
      for _ in $(seq 100); do udp_bound "$target" && break; sleep 0.1; done
    fi
    # -recv_timeout: a call whose answer never comes fails after 10 s instead of holding sipp
    # (and the wall time) until -timeout.
    start=$(date +%s.%N)
    set +e
    timeout 900 sipp -sf "$SCENARIO" "127.0.0.1:$target" -t "$sipp_t" -s load -i 127.0.0.1 \
      -p "$(free_port)" -mi 127.0.0.1 -mp "$(free_port)" -r "$rate" -rp 1000 -m "$CALLS" -l "$LIMIT" -d 0 \
      -recv_timeout 10s "${SIPP_BUF[@]}" -nostdin -timeout 300s -trace_stat -stf "$WORK/stat.csv" -fd 1 \
      -trace_err -error_file "$WORK/err.log" >/dev/null 2>&1
    sipp_rc=$?
    set -e
    end=$(date +%s.%N)
    load1=$(cut -d' ' -f1 /proc/loadavg)
    if [ -n "$kam_pid" ]; then
      kill -TERM "$kam_pid" 2>/dev/null || true
      wait "$kam_pid" 2>/dev/null || true
      kam_pid=""
    fi
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=""
    # The last CSV row holds the cumulative counters.
    read -r ok failed timeouts < <(python3 - "$WORK/stat.csv" <<'PY'
import sys
rows = [l.rstrip(';\n').split(';') for l in open(sys.argv[1]) if l.strip()]
head, last = rows[0], rows[-1]
col = lambda name: int(last[head.index(name)]) if name in head else 0
print(col('SuccessfulCall(C)'), col('FailedCall(C)'),
      col('FailedMaxUDPRetrans(C)') + col('FailedTimeoutOnRecv(C)'))
PY
    )
    # Calls serve refused with its overload 503 (0 for sipp, which refuses nothing).
    rm -f "$WORK/why"
    refused=$(python3 - "$WORK/serve.log" "$WORK/why" <<'PY'
import json, sys
n = 0
for l in open(sys.argv[1]):
    try:
        e = json.loads(l)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get('event') == 'stats':
        n = e.get('calls_refused_overload', 0)
        why = '/'.join(str(e.get('calls_refused_' + k, 0)) for k in ('sip_backlog', 'setup_queue', 'capacity'))
        print(why, file=open(sys.argv[2], 'w'))
print(n)
PY
    )
    # A scenario without a 503 path fails refused calls: they are in `failed`, not in `ok`.
    answered=$ok
    grep -q 'response="503"' "$SCENARIO" && answered=$((ok >= refused ? ok - refused : 0))
    secs=$(python3 -c "print(f'{$end - $start:.2f}')")
    goodput=$(python3 -c "print(f'{$answered / ($end - $start):.0f}')")
    cps=$(python3 -c "print(f'{$ok / ($end - $start):.0f}')")
    why=$(cat "$WORK/why" 2>/dev/null || echo -)
    printf '%-8s %-6s %-7s %-8s %-8s %-7s %-8s %-8s %-9s %-8s %-6s %s%s\n' "$path" "$rate" "$CALLS" \
      "$answered" "$refused" "$failed" "$timeouts" "$secs" "$goodput" "$cps" "$load1" "$why" \
      "$([ "$sipp_rc" -ne 0 ] && echo "  (sipp exit $sipp_rc; see errors)" || true)"
    if [ "$failed" -ne 0 ] && [ -s "$WORK/err.log" ]; then
      # Why calls failed, by the message sipp got (or its timeout), most frequent first.
      { grep -oE "(while [a-z]+ [^,]*), received 'SIP/2.0 [0-9]{3}|timed out [^.]*" "$WORK/err.log" || true; } \
        | sort | uniq -c | sort -rn | head -4 | sed 's/^/    sipp: /'
      if [ "${path#kam-}" != "$path" ]; then
        { grep -E "ERROR|CRITICAL" "$WORK/kamailio.log" || true; } | sed -E 's/^ *[0-9]+\([0-9]+\) //' \
          | sort | uniq -c | sort -rn | head -3 | sed 's/^/    kamailio: /'
      fi
    fi
    rm -f "$WORK/err.log" "$WORK/stat.csv"
  done
done
