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

wait_port "$MOCK_PORT"

run() { measured_run "$BIN" SLOTGATE_LOG="$1"; } # $1 = SLOTGATE_LOG value

rps_on=(); rps_off=(); cpu_on=(); cpu_off=()
for r in $(seq "$ROUNDS"); do
  read -r off c_off < <(run "info,slotgate::access=off")
  read -r on c_on < <(run "info")
  echo "round $r: access log off ${off} req/s (${c_off} cpu-us/req), on ${on} req/s (${c_on} cpu-us/req)"
  rps_on+=("$on"); rps_off+=("$off"); cpu_on+=("$c_on"); cpu_off+=("$c_off")
done
mon=$(median "${rps_on[@]}"); moff=$(median "${rps_off[@]}")
con=$(median "${cpu_on[@]}"); coff=$(median "${cpu_off[@]}")
echo "median: off ${moff} req/s, on ${mon} req/s, on/off = $(echo "$mon / $moff" | bc -l | cut -c1-6)"
echo "median slotgate CPU per request: off ${coff} us, on ${con} us, on/off = $(echo "$con / $coff" | bc -l | cut -c1-6)"
echo "access events written: $(grep -c '"target":"slotgate::access"' "$DIR/log.json" || true)"
