#!/usr/bin/env bash
# End-to-end cost of the concurrency gate under its limit: wrk against the release
# binary in front of `slotgate mock-backend`, alternating runs with `max_inflight` unset and set
# far above the load (same machine, same binary), and the ratio. Needs wrk.
#
#   cargo build --release && bench/admission.sh [seconds-per-run] [rounds]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_params 5 18200 18280 "$@"
start_mock "$MOCK_PORT" --log-level warn
write_config "$DIR/unset.toml" "$PORT" "$MOCK_PORT" 1
write_config "$DIR/limited.toml" "$PORT" "$MOCK_PORT" 1 "max_inflight = 100000"
write_post_lua "$DIR/post.lua" '{"model":"m1","messages":[{"role":"user","content":"hi"}]}'
run() {
  "$BIN" --log-level warn serve --config "$DIR/$1.toml" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/models" && break; sleep 0.05; done
  wrk -t1 -c64 -d"${SECS}s" -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" \
    | awk '/Requests\/sec/ {print $2}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
a=(); b=()
for r in $(seq "$ROUNDS"); do
  x=$(run unset); y=$(run limited)
  echo "round $r: max_inflight unset $x req/s, max_inflight=100000 $y req/s"
  a+=("$x"); b+=("$y")
done
python3 - "${a[@]}" -- "${b[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]; i = args.index("--")
a = [float(x) for x in args[:i]]; b = [float(x) for x in args[i + 1:]]
print(f"median: unset {statistics.median(a):.0f} req/s, limited {statistics.median(b):.0f} req/s, "
      f"limited/unset = {statistics.median(b) / statistics.median(a):.3f}")
PY
