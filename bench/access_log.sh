#!/usr/bin/env bash
# End-to-end cost of the decision log: wrk against the release binary in front of
# `slotgate mock-backend`, alternating runs with the access log on and off (same machine, same
# binary), and the on/off throughput ratio. Needs wrk (`apt-get install -y wrk`).
#
#   cargo build --release && bench/access_log.sh [seconds-per-run] [rounds]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_params 10 18100 18080 "$@"
CONNS=${CONNS:-64}

start_mock "$MOCK_PORT"
write_config "$DIR/slotgate.toml" "$PORT" "$MOCK_PORT" "${CORES:-1}"
write_post_lua "$DIR/post.lua" '{"model":"m1","messages":[{"role":"user","content":"hello"}]}'

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
wait_port "$MOCK_PORT"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # $1 = SLOTGATE_LOG value; prints "req/s cpu-us-per-request"
  SLOTGATE_LOG="$1" "$BIN" --log-format json serve --config "$DIR/slotgate.toml" 2>>"$DIR/log.json" &
  local pid=$!
  wait_port "$PORT"
  wrk -t1 -c"$CONNS" -d1s -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null  # warm-up
  local t0; t0=$(cpu_ticks "$pid")
  wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$DIR/wrk.txt"
  local t1; t1=$(cpu_ticks "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  local rps n
  rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk.txt")
  n=$(awk '/requests in/ {print $1}' "$DIR/wrk.txt")
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
echo "access events written: $(grep -c '"target":"slotgate::access"' "$DIR/log.json" || true)"
