#!/usr/bin/env bash
# Wake-up path A/B: slotgate's latency at concurrency 1 and 4 (wrk --latency, a
# sequential client per connection) and its CPU/request at 64 connections, for each io_uring
# setup-flag set of `[tuning] uring_flags` and for the epoll driver, with nginx as the in-run
# reference. Candidates are interleaved over ROUNDS rounds; each cell is the best round (noise on
# a shared machine only makes figures worse). Loopback only; mock on core 1, proxies on core 0.
#
#   bench/e2e/wake_ab.sh                # every candidate, 3 rounds, ~4 minutes
#   ROUNDS=2 SECS=3 bench/e2e/wake_ab.sh coop defer
#
# Output: a Markdown table on stdout and in bench/e2e/results/wake-ab.md (raw rows: wake-ab.jsonl).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SG="${SLOTGATE_BIN:-$ROOT/target/release/slotgate}"
ROUNDS="${ROUNDS:-3}"
SECS="${SECS:-4}"
B="${E2E_PORT_BASE:-18000}"
P_MOCK=$((B + 801)); P_NG=$((B + 810)); P_SG=$((B + 820))

declare -A CAND=(
  [coop]='uring_flags = ["coop_taskrun"]'
  [none]='uring_flags = []'
  [single]='uring_flags = ["coop_taskrun", "single_issuer"]'
  [defer]='uring_flags = ["coop_taskrun", "single_issuer", "defer_taskrun"]'
  [sqpoll]='uring_flags = ["sqpoll", "single_issuer"]
uring_sqpoll_idle_ms = 10'
  [epoll]='driver = "epoll"'
)
ORDER=(coop none single defer sqpoll epoll)
[ $# -gt 0 ] && ORDER=("$@")
[ -x "$SG" ] || { echo "wake_ab.sh: no $SG (cargo build --release)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/slotgate-wake.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
NICE=(); [ "$(id -u)" = 0 ] && NICE=(nice -n -20)
bg() { local cpu=$1; shift; "${NICE[@]}" taskset -c "$cpu" "$@" >>"$WORK/servers.log" 2>&1 & PIDS+=($!); LAST=$!; }
python3 "$HERE/bench.py" body --size 1024 --model bench --max-tokens 16 --out "$WORK/small.json"

bg 1 "$SG" --log-level warn mock-backend --port "$P_MOCK" --model bench --tokens 16 --response-bytes 1024
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
  upstream json { server 127.0.0.1:$P_MOCK; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$P_NG; location / { proxy_pass http://json; } }
}
EOF
bg 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
NG_PID=$LAST

start_sg() { # candidate -> SG_PID
  cat >"$WORK/sg.toml" <<EOF
[listen]
addr = "127.0.0.1:$P_SG"
[routing]
default_slot = "json"
[[upstream]]
name = "json"
kind = "container"
url = "http://127.0.0.1:$P_MOCK/v1"
pool_max_idle = 64
[tuning]
cores = 1
${CAND[$1]}
EOF
  bg 0 "$SG" --log-level warn serve --config "$WORK/sg.toml"
  SG_PID=$LAST
  python3 "$HERE/bench.py" probe --port "$P_SG" --model bench --deadline 20 >/dev/null
}
stop_sg() { kill "$SG_PID"; while kill -0 "$SG_PID" 2>/dev/null; do sleep 0.1; done; }
python3 "$HERE/bench.py" probe --port "$P_MOCK" --model bench --deadline 20 >/dev/null
python3 "$HERE/bench.py" probe --port "$P_NG" --model bench --deadline 20 >/dev/null

wrk_json() { # port conns pid -> JSON: p50_ms p99_ms rps cpu_us_per_req
  local c0 c1 out
  BODY_FILE="$WORK/small.json" taskset -c 1 wrk -t1 -c"$2" -d1s -s "$HERE/post.lua" "http://127.0.0.1:$1/v1/chat/completions" >/dev/null
  c0=$(python3 "$HERE/bench.py" proc --pids "$3")
  out=$(BODY_FILE="$WORK/small.json" "${NICE[@]}" taskset -c 1 wrk -t1 -c"$2" -d"${SECS}s" --latency -s "$HERE/post.lua" \
        "http://127.0.0.1:$1/v1/chat/completions")
  c1=$(python3 "$HERE/bench.py" proc --pids "$3")
  python3 - "$out" "$c0" "$c1" <<'EOF'
import json, re, sys
out, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def pct(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(m.group(1)) * unit[m.group(2)] if m else None
n = int(re.search(r"(\d+) requests in", out).group(1))
print(json.dumps({"p50_ms": pct(50), "p99_ms": pct(99), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                  "cpu_us_per_req": (c1["cpu_ns"] - c0["cpu_ns"]) / 1e3 / n if n else None}))
EOF
}

RAW="$WORK/raw.jsonl"
for ((r = 0; r < ROUNDS; r++)); do
  for name in "${ORDER[@]}" nginx; do
    if [ "$name" = nginx ]; then port=$P_NG; pid=$NG_PID; else start_sg "$name"; port=$P_SG; pid=$SG_PID; fi
    for c in 1 4 64; do
      j=$(wrk_json "$port" "$c" "$pid")
      echo "{\"candidate\":\"$name\",\"round\":$r,\"conns\":$c,${j#\{}" >>"$RAW"
      echo "[wake $(date +%H:%M:%S)] $name c=$c $j" >&2
    done
    [ "$name" = nginx ] || stop_sg
  done
done

mkdir -p "$HERE/results"
cp "$RAW" "$HERE/results/wake-ab.jsonl"
python3 - "$RAW" "$ROUNDS" "$SECS" "${ORDER[@]}" nginx <<'EOF' | tee "$HERE/results/wake-ab.md"
import json, sys, datetime, os
raw, rounds, secs, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = [json.loads(l) for l in open(raw)]
def best(n, c, k, hi=False):
    v = [r[k] for r in rows if r["candidate"] == n and r["conns"] == c and r.get(k) is not None]
    return (max(v) if hi else min(v)) if v else None
print(f"Wake-up path A/B, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()} CPUs, "
      f"Linux {os.uname().release}; {rounds} rounds x {secs} s, best round per cell; wrk closed loop "
      "(one sequential client per connection); mock on core 1, proxy on core 0; logs off.\n")
print("| candidate | c=1 p50 ms | c=1 p99 ms | c=4 p50 ms | c=4 p99 ms | c=1 req/s | c=64 req/s | c=64 CPU µs/req |")
print("|---|---|---|---|---|---|---|---|")
f = lambda v, d=3: "–" if v is None else f"{v:,.{d}f}"
for n in names:
    print(f"| {n} | {f(best(n,1,'p50_ms'))} | {f(best(n,1,'p99_ms'))} | {f(best(n,4,'p50_ms'))} | {f(best(n,4,'p99_ms'))} | "
          f"{f(best(n,1,'rps',True),0)} | {f(best(n,64,'rps',True),0)} | {f(best(n,64,'cpu_us_per_req'),1)} |")
EOF
