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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # $1 = SLOTGATE_LOG value; prints "req/s cpu-us-per-request"
  SLOTGATE_LOG="$1" "$BIN" --log-format json serve --config "$LOGDIR/slotgate.toml" 2>>"$LOGDIR/log.json" &
  local pid=$!
  wait_port "$PORT"
  wrk -t1 -c"$CONNS" -d1s -s "$LOGDIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null  # warm-up
  local t0; t0=$(cpu_ticks "$pid")
  wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$LOGDIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$LOGDIR/wrk.txt"
  local t1; t1=$(cpu_ticks "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  local rps n
  rps=$(awk '/Requests\/sec/ {print $2}' "$LOGDIR/wrk.txt")
  n=$(awk '/requests in/ {print $1}' "$LOGDIR/wrk.txt")
  # slotgate's own CPU time (workers + log writer thread) per request: robust when the machine is
  # shared, unlike req/s.
  echo "$rps $(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l | cut -c1-6)"
}

rps_on=(); rps_off=(); cpu_on=(); cpu_off=()
for r in $(seq "$ROUNDS"); do
  read -r off c_off < <(run "info,slotgate::access=off")
  read -r on c_on < <(run "info")
  echo "round $r: access log off ${off} req/s (${c_off} cpu-us/req), on ${on} req/s (${c_on} cpu-us/req)"
  rps_on+=("$on"); rps_off+=("$off"); cpu_on+=("$c_on"); cpu_off+=("$c_off")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mon=$(median "${rps_on[@]}"); moff=$(median "${rps_off[@]}")
con=$(median "${cpu_on[@]}"); coff=$(median "${cpu_off[@]}")
echo "median: off ${moff} req/s, on ${mon} req/s, on/off = $(echo "$mon / $moff" | bc -l | cut -c1-6)"
echo "median slotgate CPU per request: off ${coff} us, on ${con} us, on/off = $(echo "$con / $coff" | bc -l | cut -c1-6)"
echo "access events written: $(grep -c '"target":"slotgate::access"' "$LOGDIR/log.json" || true)"
