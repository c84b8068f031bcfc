#!/usr/bin/env bash
# A/B of two slotgate binaries on the small-request path: wrk against each in turn (same config,
# same `slotgate mock-backend`, access log at its default), alternating for [rounds], and the
# median of slotgate's own CPU time per request (utime + stime from /proc, robust on a shared
# machine, unlike req/s). Used for the panic policy (unwind vs abort) in DESIGN-NOTES.
#
#   A=target/release/slotgate B=/tmp/abort/release/slotgate bench/binaries.sh [seconds-per-run] [rounds]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_params 8 18200 18180 "$@"
CONNS=${CONNS:-64}
A=${A:?A=first binary}
B=${B:?B=second binary}

start_mock "$MOCK_PORT"
write_config "$DIR/slotgate.toml" "$PORT" "$MOCK_PORT" "${CORES:-1}"
write_post_lua "$DIR/post.lua" '{"messages":[{"role":"user","content":"hello"}],"model":"m1"}'

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
wait_port "$MOCK_PORT"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # $1 = binary; prints "req/s cpu-us-per-request"
  taskset -c 0 "$1" serve --config "$DIR/slotgate.toml" 2>>"$DIR/log.txt" &
  local pid=$!
  wait_port "$PORT"
  taskset -c 1 wrk -t1 -c"$CONNS" -d1s -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  local t0; t0=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$DIR/wrk.txt"
  local t1; t1=$(cpu_ticks "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  local rps n
  rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk.txt")
  n=$(awk '/requests in/ {print $1}' "$DIR/wrk.txt")
  echo "$rps $(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l | cut -c1-6)"
}

ra=(); rb=(); ca=(); cb=()
for r in $(seq "$ROUNDS"); do
  read -r x cx < <(run "$A")
  read -r y cy < <(run "$B")
  echo "round $r: A ${x} req/s (${cx} cpu-us/req), B ${y} req/s (${cy} cpu-us/req)"
  ra+=("$x"); rb+=("$y"); ca+=("$cx"); cb+=("$cy")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "A = $A"
echo "B = $B"
echo "median req/s: A $(median "${ra[@]}"), B $(median "${rb[@]}")"
echo "median slotgate CPU per request: A $(median "${ca[@]}") us, B $(median "${cb[@]}") us, A/B = $(echo "$(median "${ca[@]}") / $(median "${cb[@]}")" | bc -l | cut -c1-6)"
