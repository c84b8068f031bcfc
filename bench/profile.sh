#!/usr/bin/env bash
# Where slotgate's CPU goes: `perf record -e cpu-clock` (software clock: works on VMs without
# hardware counters) on the release binary serving a small-request or an SSE load, printed as the
# top symbols by self time. The per-phase answer behind the e2e table's rows.
#
#   bench/profile.sh small [seconds]   # small POST (~1 KiB answer), wrk 64 connections
#   bench/profile.sh sse [seconds]     # streams of 500 unpaced SSE events, wrk 16 connections
#
# slotgate on core 0, the mock and wrk on core 1, loopback only; bounded by [seconds] (default 8).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MODE=${1:-small}
SECS=${2:-8}
MOCK_PORT=${MOCK_PORT:-18260}
PORT=${PORT:-18250}
command -v perf >/dev/null || { echo "perf missing: apt-get install linux-perf" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release --quiet
case "$MODE" in
  small)
    "$BIN" --log-level warn mock-backend --port "$MOCK_PORT" --model m1 --tokens 16 --response-bytes 1024 >/dev/null 2>&1 &
    BODY='{"messages":[{"role":"user","content":"hello"}],"model":"m1"}'
    CONNS=64 ;;
  sse)
    "$BIN" --log-level warn mock-backend --port "$MOCK_PORT" --model m1 --tokens 500 >/dev/null 2>&1 &
    BODY='{"messages":[{"role":"user","content":"hello"}],"model":"m1","stream":true}'
    CONNS=16 ;;
  *) echo "usage: $0 small|sse [seconds]" >&2; exit 2 ;;
esac
wait_port "$MOCK_PORT"
write_config "$DIR/slotgate.toml" "$PORT" "$MOCK_PORT" 1
write_post_lua "$DIR/post.lua" "$BODY"
taskset -c 0 "$BIN" --log-format json serve --config "$DIR/slotgate.toml" 2>"$DIR/log.json" &
SG=$!
wait_port "$PORT"
taskset -c 1 wrk -t1 -c"$CONNS" -d1s -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNS" -d"$((SECS + 2))s" -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$DIR/wrk.txt" &
WRK=$!
sleep 1
perf record -q -e cpu-clock -F 4999 -g -p "$SG" -o "$DIR/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$WRK"
kill -TERM "$SG"; wait "$SG" || true
echo "# slotgate profile, $MODE load, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD), io_uring, access log on"
grep -E "Requests/sec|requests in" "$DIR/wrk.txt"
perf report -i "$DIR/perf.data" --stdio --no-children --sort dso,sym --percent-limit 0.8 2>/dev/null \
  | grep -E "^ +[0-9]" | head -40
echo "## by binary"
perf report -i "$DIR/perf.data" --stdio --no-children --sort dso 2>/dev/null | grep -E "^ +[0-9]" | head -8
echo "## unlock_irqrestore callers (time in irq-off sections is charged to the unlock on a VM without NMI sampling)"
perf report -i "$DIR/perf.data" --stdio --no-children --sort sym -G --symbol-filter=_raw_spin_unlock_irqrestore 2>/dev/null | grep -E "[0-9.]+%.*[a-z_]+" | head -12
