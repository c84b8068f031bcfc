#!/usr/bin/env bash
# End-to-end benchmark (issue 7): slotgate vs nginx vs HAProxy (plus HAProxy routing on the
# body's "model") in front of the same mock model servers, measured in one run, loopback only.
#
#   benches/e2e/run.sh            # full run, ~7 minutes
#   benches/e2e/run.sh --quick    # ~3 minutes, one repeat, shorter loads
#
# Options: --targets direct,slotgate,...  --tuning FILE (slotgate profile; cores is forced to 1)
#          --repeats N  --out FILE  --no-build  --no-install  --keep (keep the work dir)
#          --one-core (proxies, mocks and load generators all on core 0)
# Layout: mocks + load generator pinned to core 1, every proxy pinned to core 0 (one worker
# each). Every load is bounded in time; every process this script starts is stopped on exit.
# Not run in CI. See benches/e2e/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
BENCH="$HERE/bench.py"

QUICK=0
TARGETS="direct,slotgate,nginx,haproxy,haproxy-body"
TUNING=""
REPEATS=""
OUT="$HERE/results/latest.md"
BUILD=1
INSTALL=1
KEEP=0
ONE_CORE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --targets) TARGETS="$2"; shift ;;
    --tuning) TUNING="$2"; shift ;;
    --repeats) REPEATS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;
    --one-core) ONE_CORE=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  WARM=2; DUR=4; BIG_DUR=3; LAT_DUR=4; REPEATS="${REPEATS:-1}"; PACED_EVENTS=20
else
  WARM=2; DUR=6; BIG_DUR=4; LAT_DUR=6; REPEATS="${REPEATS:-3}"; PACED_EVENTS=40
fi
CONNS=64
SSE_STREAMS=200
SSE_EVENTS=500
PACE=20            # paced mock: events per second per stream
HOLD_N=1000

# Ports (loopback only). Override the base with E2E_PORT_BASE if these are taken.
B="${E2E_PORT_BASE:-18000}"
P_MOCK_JSON=$((B + 101)); P_MOCK_SSE=$((B + 102)); P_MOCK_PACED=$((B + 103))
P_SG=$((B + 200)); P_SG_ADMIN=$((B + 290))
P_NG=$((B + 300)); P_HP=$((B + 400)); P_HB=$((B + 500))

# Pinning: proxies on core 0, mocks and load generators on core 1.
# --one-core puts everything on core 0: req/s then compares whole-path CPU cost per request,
# free of cross-core wake-up latency (large on VMs).
if [ "$(nproc)" -ge 2 ] && [ "$ONE_CORE" = 0 ]; then PROXY_CPU=0; LOAD_CPU=1; else PROXY_CPU=0; LOAD_CPU=0; fi
# Every benchmark process runs at nice -20 (when root) so that other work on a shared machine
# (compiles...) preempts proxies, mocks and load generators alike as little as possible.
NICE=()
if [ "$(id -u)" = 0 ]; then NICE=(nice -n -20); fi
on_load_core() { "${NICE[@]}" taskset -c "$LOAD_CPU" "$@"; }

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has_target() { case ",$TARGETS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# Servers are started with `nice taskset ... &` directly, never through a function, so $! is
# the server's own pid (nice and taskset exec).

# ------------------------------------------------------------------ tools
ensure_tools() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  if [ "${#missing[@]}" -gt 0 ]; then
    [ "$INSTALL" = 1 ] || { echo "run.sh: missing ${missing[*]} (and --no-install)" >&2; exit 1; }
    log "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null || {
      # nginx-light is a transitional package on some releases; plain nginx is the fallback.
      local alt=("${missing[@]/nginx-light/nginx}")
      apt-get install -y -qq "${alt[@]}" >/dev/null
    }
  fi
  export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
  if ! command -v oha >/dev/null 2>&1 && [ "$INSTALL" = 1 ]; then
    log "installing oha (open-loop load generator) from crates.io"
    cargo install oha --locked --quiet || log "oha did not install: latency rows will be empty"
  fi
}

ensure_tools
if [ "$BUILD" = 1 ]; then
  log "building slotgate (release)"
  (cd "$ROOT" && cargo build --release --quiet)
fi
SG_BIN="${SLOTGATE_BIN:-$ROOT/target/release/slotgate}"
[ -x "$SG_BIN" ] || { echo "run.sh: no $SG_BIN" >&2; exit 1; }
HAVE_OHA=0; command -v oha >/dev/null 2>&1 && HAVE_OHA=1

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------------------ work dir + cleanup
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
WORK="$(mktemp -d /tmp/slotgate-e2e.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + 5))
  for p in "${PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

# Fail fast if a port is taken (e.g. by a run that was killed with SIGKILL).
for p in "$P_MOCK_JSON" "$P_MOCK_SSE" "$P_MOCK_PACED" "$P_SG" "$P_SG_ADMIN" $((P_NG + 1)) $((P_NG + 2)) \
  $((P_NG + 3)) $((P_HP + 1)) $((P_HP + 2)) $((P_HP + 3)) "$P_HB"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "run.sh: port $p is in use; stop what holds it or set E2E_PORT_BASE" >&2
    exit 1
  fi
done

# ------------------------------------------------------------------ bodies
"$PY" "$BENCH" body --size 1024 --model bench --max-tokens 16 --out "$WORK/small.json"
"$PY" "$BENCH" body --size 65536 --model bench --max-tokens 16 --out "$WORK/big.json"

# ------------------------------------------------------------------ mocks (core 1)
start_mock() { # port model extra-args...
  local port=$1 model=$2; shift 2
  "${NICE[@]}" taskset -c "$LOAD_CPU" "$SG_BIN" --log-level warn mock-backend --port "$port" --model "$model" "$@" \
    >"$WORK/mock-$port.log" 2>&1 &
  PIDS+=($!)
  eval "PID_MOCK_$port=$!"
}
start_mock "$P_MOCK_JSON" bench --tokens 16 --response-bytes 1024
start_mock "$P_MOCK_SSE" bench-sse --tokens "$SSE_EVENTS" --tokens-per-sec 0
start_mock "$P_MOCK_PACED" bench-paced --tokens 100000 --tokens-per-sec "$PACE"
PID_MOCK_JSON=$(eval echo "\$PID_MOCK_$P_MOCK_JSON")
for p in "$P_MOCK_JSON" "$P_MOCK_SSE" "$P_MOCK_PACED"; do
  "$PY" "$BENCH" probe --port "$p" --path /health >/dev/null
done

# ------------------------------------------------------------------ proxies (core 0)
declare -A PID_OF
if has_target slotgate; then
  cat >"$WORK/slotgate.toml" <<EOF
[listen]
addr = "127.0.0.1:$P_SG"
admin = "127.0.0.1:$P_SG_ADMIN"

[routing]
default_slot = "json"

# pool_max_idle = 64 matches nginx's "keepalive 64" below.
[[upstream]]
name = "json"
kind = "container"
url = "http://127.0.0.1:$P_MOCK_JSON/v1"
pool_max_idle = 64

[[upstream]]
name = "sse"
kind = "container"
url = "http://127.0.0.1:$P_MOCK_SSE/v1"
pool_max_idle = 64

[[upstream]]
name = "paced"
kind = "container"
url = "http://127.0.0.1:$P_MOCK_PACED/v1"
pool_max_idle = 64

[tuning]
cores = 1
EOF
  SG_ARGS=(serve --config "$WORK/slotgate.toml")
  if [ -n "$TUNING" ]; then
    # The profile replaces [tuning]; this harness measures one core, so cores is forced to 1.
    grep -vE '^[[:space:]]*cores[[:space:]]*=' "$TUNING" >"$WORK/tuning.toml"
    if grep -qE '^[[:space:]]*\[tuning\]' "$WORK/tuning.toml"; then
      sed -i 's/^[[:space:]]*\[tuning\][[:space:]]*$/[tuning]\ncores = 1/' "$WORK/tuning.toml"
    else
      sed -i '1i cores = 1' "$WORK/tuning.toml"
    fi
    SG_ARGS+=(--tuning "$WORK/tuning.toml")
  fi
  "${NICE[@]}" taskset -c "$PROXY_CPU" "$SG_BIN" --log-level warn "${SG_ARGS[@]}" >"$WORK/slotgate.log" 2>&1 &
  PIDS+=($!); PID_OF[slotgate]=$!
fi

if has_target nginx; then
  mkdir -p "$WORK/nginx"
  NGINX_MODS=""
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_max_body_size 2m;
  client_body_buffer_size 128k;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream json  { server 127.0.0.1:$P_MOCK_JSON;  keepalive 64; keepalive_requests 1000000; }
  upstream sse   { server 127.0.0.1:$P_MOCK_SSE;   keepalive 64; keepalive_requests 1000000; }
  upstream paced { server 127.0.0.1:$P_MOCK_PACED; keepalive 64; keepalive_requests 1000000; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
  proxy_read_timeout 120s;
  server { listen 127.0.0.1:$((P_NG + 1)) backlog=4096; location / { proxy_pass http://json; } }
  server { listen 127.0.0.1:$((P_NG + 2)) backlog=4096; location / { proxy_pass http://sse; } }
  server { listen 127.0.0.1:$((P_NG + 3)) backlog=4096; location / { proxy_pass http://paced; } }
}
EOF
  "${NICE[@]}" taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/stdout.log" 2>&1 &
  PIDS+=($!); PID_OF[nginx]=$!
fi

haproxy_common() {
  cat <<EOF
global
  nbthread 1
  maxconn 8000
  log stderr format raw local0 err
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  http-reuse always
backend json
  server s1 127.0.0.1:$P_MOCK_JSON
# Streams: without http-no-delay HAProxy merges small writes and SSE events wait up to ~200 ms.
backend sse
  option http-no-delay
  server s1 127.0.0.1:$P_MOCK_SSE
backend paced
  option http-no-delay
  server s1 127.0.0.1:$P_MOCK_PACED
EOF
}
if has_target haproxy; then
  { haproxy_common; cat <<EOF
frontend f_json
  bind 127.0.0.1:$((P_HP + 1))
  default_backend json
frontend f_sse
  bind 127.0.0.1:$((P_HP + 2))
  default_backend sse
frontend f_paced
  bind 127.0.0.1:$((P_HP + 3))
  default_backend paced
EOF
  } >"$WORK/haproxy.cfg"
  haproxy -c -q -f "$WORK/haproxy.cfg"
  "${NICE[@]}" taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  PIDS+=($!); PID_OF[haproxy]=$!
fi
if has_target haproxy-body; then
  # Routing on the body's "model" needs the whole body buffered (option http-buffer-request);
  # with the default tune.bufsize (16 KiB) a larger body is matched on its first 16 KiB only.
  { haproxy_common; cat <<EOF
frontend f_body
  bind 127.0.0.1:$P_HB
  option http-buffer-request
  acl m_sse   req.body -m reg '"model" *: *"bench-sse"'
  acl m_paced req.body -m reg '"model" *: *"bench-paced"'
  use_backend sse if m_sse
  use_backend paced if m_paced
  default_backend json
EOF
  } >"$WORK/haproxy-body.cfg"
  haproxy -c -q -f "$WORK/haproxy-body.cfg"
  "${NICE[@]}" taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-body.cfg" >"$WORK/haproxy-body.log" 2>&1 &
  PIDS+=($!); PID_OF[haproxy-body]=$!
fi
PID_OF[direct]=$PID_MOCK_JSON

port_of() { # target workload(json|sse|paced)
  local off
  case "$2" in json) off=1 ;; sse) off=2 ;; paced) off=3 ;; esac
  case "$1" in
    direct) echo $((B + 100 + off)) ;;
    slotgate) echo "$P_SG" ;;
    nginx) echo $((P_NG + off)) ;;
    haproxy) echo $((P_HP + off)) ;;
    haproxy-body) echo "$P_HB" ;;
  esac
}
model_of() { case "$1" in json) echo bench ;; sse) echo bench-sse ;; paced) echo bench-paced ;; esac; }

IFS=',' read -r -a TLIST <<<"$TARGETS"
log "waiting for ${TARGETS}"
for t in "${TLIST[@]}"; do
  for w in json sse paced; do
    "$PY" "$BENCH" probe --port "$(port_of "$t" "$w")" --model "$(model_of "$w")" --deadline 30 >/dev/null \
      || { echo "run.sh: $t did not become ready for $w (logs in $WORK)" >&2; exit 1; }
  done
done
DRIVER="n/a"
if has_target slotgate; then
  DRIVER=$("$PY" "$BENCH" probe --port "$P_SG_ADMIN" --path /readyz | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("driver","?"))')
  log "slotgate driver: $DRIVER"
fi

emit() { echo "$1" >>"$RESULTS"; }
proc_json() { "$PY" "$BENCH" proc --pids "$1"; }

# Idle RSS, fresh after start (only readiness probes have been served).
sleep 1
for t in "${TLIST[@]}"; do
  r=$(proc_json "${PID_OF[$t]}")
  emit "{\"target\":\"$t\",\"kind\":\"rss_idle\",$(echo "$r" | sed 's/^{//')"
done

# ------------------------------------------------------------------ loads
wrk_run() { # target body dur -> prints json fragment rps,requests,errors,cpu
  local t=$1 body=$2 dur=$3 port out c0 c1
  port=$(port_of "$t" json)
  c0=$(proc_json "${PID_OF[$t]}")
  out=$(BODY_FILE="$body" on_load_core wrk -t1 -c"$CONNS" -d"${dur}s" --timeout 5s -s "$HERE/post.lua" \
        "http://127.0.0.1:$port/v1/chat/completions")
  c1=$(proc_json "${PID_OF[$t]}")
  "$PY" - "$out" "$c0" "$c1" <<'EOF'
import json, re, sys
out, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
n = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
ticks = c1["cpu_ticks"] - c0["cpu_ticks"]
cpu_us = ticks / c0["clk_tck"] * 1e6
print(json.dumps({"rps": rps, "requests": n, "non2xx": int(non2xx.group(1)) if non2xx else 0,
                  "socket_errors": sock.group(1) if sock else "", "cpu_us_per_req": cpu_us / n if n else None,
                  "rss_kib": c1["rss_kib"]}))
EOF
}

order_for_rep() { # rotate the order each repeat so drift hits every target alike
  local rep=$1 n=${#TLIST[@]} i
  for ((i = 0; i < n; i++)); do echo "${TLIST[$(((i + rep) % n))]}"; done
}

log "phase 1: small POST, closed loop, ${CONNS} conns, ${DUR}s x ${REPEATS}"
for ((rep = 0; rep < REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do
    BODY_FILE="$WORK/small.json" on_load_core wrk -t1 -c"$CONNS" -d"${WARM}s" -s "$HERE/post.lua" \
      "http://127.0.0.1:$(port_of "$t" json)/v1/chat/completions" >/dev/null
    j=$(wrk_run "$t" "$WORK/small.json" "$DUR")
    log "  $t rps: $j"
    emit "{\"target\":\"$t\",\"kind\":\"rps\",\"rep\":$rep,$(echo "$j" | sed 's/^{//')"
  done
done

log "phase 2: 64 KiB POST, ${CONNS} conns, ${BIG_DUR}s x ${REPEATS}"
for ((rep = 0; rep < REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do
    BODY_FILE="$WORK/big.json" on_load_core wrk -t1 -c"$CONNS" -d1s -s "$HERE/post.lua" \
      "http://127.0.0.1:$(port_of "$t" json)/v1/chat/completions" >/dev/null
    j=$(wrk_run "$t" "$WORK/big.json" "$BIG_DUR")
    log "  $t big: $j"
    emit "{\"target\":\"$t\",\"kind\":\"big\",\"rep\":$rep,$(echo "$j" | sed 's/^{//')"
  done
done

# Fixed rate for the latency phase: half the lowest peak, rounded down to a multiple of 500.
RATE=$("$PY" - "$RESULTS" <<'EOF'
import json, sys
peaks = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("kind") == "rps":
        peaks[r["target"]] = max(peaks.get(r["target"], 0), r["rps"])
low = min(peaks.values())
print(max(500, int(low * 0.5) // 500 * 500))
EOF
)
if [ "$HAVE_OHA" = 1 ]; then
  log "phase 3: latency at a fixed ${RATE} req/s (oha, open loop, CO-corrected), ${LAT_DUR}s x ${REPEATS}"
  for ((rep = 0; rep < REPEATS; rep++)); do
    for t in $(order_for_rep "$rep"); do
      port=$(port_of "$t" json)
      on_load_core oha --no-tui --output-format json -z "${LAT_DUR}s" -c "$CONNS" -q "$RATE" \
        --latency-correction -m POST -H 'Content-Type: application/json' -D "$WORK/small.json" \
        "http://127.0.0.1:$port/v1/chat/completions" >"$WORK/oha-$t-$rep.json" 2>"$WORK/oha-$t-$rep.err" || true
      j=$("$PY" - "$WORK/oha-$t-$rep.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(json.dumps({"error": str(e)})); sys.exit()
lp = d.get("latencyPercentiles", {})
s = d.get("summary", {})
codes = d.get("statusCodeDistribution", {})
print(json.dumps({"p50_ms": lp.get("p50", 0) * 1e3, "p99_ms": lp.get("p99", 0) * 1e3,
                  "p999_ms": (lp.get("p99.9") or 0) * 1e3, "achieved_rps": s.get("requestsPerSec"),
                  "success": s.get("successRate"), "codes": codes}))
EOF
)
      log "  $t lat: $j"
      emit "{\"target\":\"$t\",\"kind\":\"lat\",\"rep\":$rep,$(echo "$j" | sed 's/^{//')"
    done
  done
else
  log "phase 3 skipped: oha not available"
fi

log "phase 4: SSE, ${SSE_STREAMS} streams x ${SSE_EVENTS} events unpaced; then paced at ${PACE}/s x ${PACED_EVENTS}"
for ((rep = 0; rep < REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do
    j=$(on_load_core "$PY" "$BENCH" sse --port "$(port_of "$t" sse)" --model bench-sse \
          --streams "$SSE_STREAMS" --timeout 60)
    log "  $t sse: $j"
    emit "{\"target\":\"$t\",\"kind\":\"sse\",\"rep\":$rep,$(echo "$j" | sed 's/^{//')"
    j=$(on_load_core "$PY" "$BENCH" sse --port "$(port_of "$t" paced)" --model bench-paced \
          --streams "$SSE_STREAMS" --max-tokens "$PACED_EVENTS" --timeout 60)
    log "  $t paced: $j"
    emit "{\"target\":\"$t\",\"kind\":\"paced\",\"rep\":$rep,$(echo "$j" | sed 's/^{//')"
  done
done

log "phase 5: RSS with ${HOLD_N} idle keep-alive connections, then ${HOLD_N} open SSE streams"
for t in "${TLIST[@]}"; do
  [ "$t" = direct ] && continue
  j=$(on_load_core "$PY" "$BENCH" hold --port "$(port_of "$t" json)" --model bench --n "$HOLD_N" \
        --pids "${PID_OF[$t]}" --settle 2 --timeout 30)
  log "  $t hold: $j"
  emit "{\"target\":\"$t\",\"kind\":\"hold\",$(echo "$j" | sed 's/^{//')"
  j=$(on_load_core "$PY" "$BENCH" hold --port "$(port_of "$t" paced)" --model bench-paced --stream \
        --max-tokens 100000 --n "$HOLD_N" --pids "${PID_OF[$t]}" --settle 3 --timeout 30)
  log "  $t hold streams: $j"
  emit "{\"target\":\"$t\",\"kind\":\"hold_streams\",$(echo "$j" | sed 's/^{//')"
done

# ------------------------------------------------------------------ report
LOADGEN="wrk 4.1 (closed loop) for req/s; "
if [ "$HAVE_OHA" = 1 ]; then LOADGEN+="$(oha --version 2>/dev/null | head -1) (open loop, -q, --latency-correction) for latency; "; fi
LOADGEN+="benches/e2e/bench.py (asyncio) for SSE and RSS"
MODE="$([ "$QUICK" = 1 ] && echo quick || echo full), ${REPEATS} repeat(s), proxies on core $PROXY_CPU, mocks+load on core $LOAD_CPU"
[ -n "$TUNING" ] && MODE+=", tuning $(basename "$TUNING")"
"$PY" - "$RESULTS" "$DRIVER" "$MODE" "$LOADGEN" "$RATE" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys, datetime
res, driver, mode, loadgen, rate, lb, la = sys.argv[1:8]
with open(res, "a") as f:
    f.write(json.dumps({"kind": "meta", "driver": driver, "mode": mode, "loadgen": loadgen,
                        "fixed_rate": int(rate), "load_before": lb, "load_after": la,
                        "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}) + "\n")
EOF
mkdir -p "$(dirname "$OUT")"
"$PY" "$BENCH" report --results "$RESULTS" --out "$OUT" --targets-file
cp "$RESULTS" "${OUT%.md}.jsonl"
log "table written to $OUT (raw: ${OUT%.md}.jsonl)"
