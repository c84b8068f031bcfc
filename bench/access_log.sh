#!/usr/bin/env bash
# End-to-end cost of the decision log: wrk against the release binary in front of
# `slotgate mock-backend`, alternating runs with the access log on and off (same machine, same
# binary), and the on/off throughput ratio. Needs wrk (`apt-get install -y wrk`).
#
#   cargo build --release && bench/access_log.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/slotgate}
SECS=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-64}
MOCK_PORT=${MOCK_PORT:-18100}
PORT=${PORT:-18080}
LOGDIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$LOGDIR"' EXIT

"$BIN" mock-backend --port "$MOCK_PORT" --model m1 --tokens 16 >/dev/null 2>&1 &
cat >"$LOGDIR/slotgate.toml" <<TOML
[listen]
addr = "127.0.0.1:$PORT"
admin = ""
[[upstream]]
name = "mock"
kind = "remote"
url = "http://127.0.0.1:$MOCK_PORT/v1"
models = ["m1"]
[tuning]
cores = ${CORES:-1}
TOML
cat >"$LOGDIR/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m1","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
wait_port "$MOCK_PORT"

run() { # $1 = SLOTGATE_LOG value; prints requests/s
  SLOTGATE_LOG="$1" "$BIN" --log-format json serve --config "$LOGDIR/slotgate.toml" 2>>"$LOGDIR/log.json" &
  local pid=$!
  wait_port "$PORT"
  wrk -t1 -c"$CONNS" -d1s -s "$LOGDIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null  # warm-up
  wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$LOGDIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" \
    | awk '/Requests\/sec/ {print $2}'
  kill -TERM "$pid"; wait "$pid" || true
}

on_sum=0; off_sum=0
for r in $(seq "$ROUNDS"); do
  off=$(run "info,slotgate::access=off")
  on=$(run "info")
  echo "round $r: access log off ${off} req/s, on ${on} req/s"
  on_sum=$(echo "$on_sum + $on" | bc -l); off_sum=$(echo "$off_sum + $off" | bc -l)
done
echo "mean: off $(echo "$off_sum / $ROUNDS" | bc -l | cut -c1-9) req/s, on $(echo "$on_sum / $ROUNDS" | bc -l | cut -c1-9) req/s," \
     "on/off = $(echo "$on_sum / $off_sum" | bc -l | cut -c1-6)"
echo "access events written: $(grep -c '"target":"slotgate::access"' "$LOGDIR/log.json" || true)"
