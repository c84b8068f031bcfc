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

wait_port "$MOCK_PORT"
export PIN_PROXY=${PIN_PROXY:-taskset -c 0} PIN_LOAD=${PIN_LOAD:-taskset -c 1}
run() { measured_run "$1"; } # $1 = binary

ra=(); rb=(); ca=(); cb=()
for r in $(seq "$ROUNDS"); do
  read -r x cx < <(run "$A")
  read -r y cy < <(run "$B")
  echo "round $r: A ${x} req/s (${cx} cpu-us/req), B ${y} req/s (${cy} cpu-us/req)"
  ra+=("$x"); rb+=("$y"); ca+=("$cx"); cb+=("$cy")
done
echo "A = $A"
echo "B = $B"
echo "median req/s: A $(median "${ra[@]}"), B $(median "${rb[@]}")"
echo "median slotgate CPU per request: A $(median "${ca[@]}") us, B $(median "${cb[@]}") us, A/B = $(echo "$(median "${ca[@]}") / $(median "${cb[@]}")" | bc -l | cut -c1-6)"
