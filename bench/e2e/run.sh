#!/usr/bin/env bash
# End-to-end benchmark: slotgate vs nginx vs HAProxy vs LiteLLM (plus HAProxy routing on the
# body's "model") in front of the same mock model servers, measured in one run, loopback only.
#
#   bench/e2e/run.sh            # full run, every target and row, ~15 minutes
#   bench/e2e/run.sh --quick    # ~6 minutes, one repeat, shorter loads
#
# Options: --targets direct,slotgate,nginx,haproxy,haproxy-body,litellm (default: all)
#          --tuning FILE (slotgate profile; cores is forced to 1)
#          --repeats N  --out FILE  --no-build  --no-install  --keep (keep the work dir)
#          --one-core (proxies, mocks and load generators all on core 0)
#          --backend nginx (the small-request backend is nginx with a fixed ~350-byte answer)
#          --budget PCT (proxy-bound phase: the proxy's CPU quota, % of one core; default 30)
#          --quiet-logs (request logs off for every proxy; by default each logs as its users run it)
# Layout: mocks + load generator pinned to core 1, every proxy pinned to core 0 (one worker
# each). Every load is bounded in time; every process this script starts is stopped on exit.
# Not run in CI. See bench/e2e/README.md.
set -euo pipefail

NAME=run.sh
LOG_TAG=e2e
TARGETS="direct,slotgate,nginx,haproxy,haproxy-body,litellm"
# The exact command, for the table's header.
CMDLINE="bench/e2e/run.sh${*:+ $*}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
OUT="$HERE/results/latest.md"
TUNING=""
ONE_CORE=0
BACKEND=mock
while [ $# -gt 0 ]; do
  case "$1" in
    --tuning) TUNING="$2"; shift ;;
    --no-install) INSTALL=0 ;;
    --one-core) ONE_CORE=1 ;;
    --backend) BACKEND="$2"; shift ;;
    *) common_option "$@"; shift $((OPT_ARGS - 1)) ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  WARM=2; DUR=4; BIG_DUR=3; LAT_DUR=4; REPEATS="${REPEATS:-1}"; PACED_EVENTS=20; SLO_STEP=2; SLO_BISECT=3; SLO_RETRIES=0
else
  WARM=2; DUR=6; BIG_DUR=4; LAT_DUR=6; REPEATS="${REPEATS:-3}"; PACED_EVENTS=40
fi
PACE=20            # paced mock: events per second per stream
HOLD_N=1000

# Ports (loopback only). Override the base with E2E_PORT_BASE if these are taken.
B="${E2E_PORT_BASE:-18000}"
P_MOCK_JSON=$((B + 101)); P_MOCK_SSE=$((B + 102)); P_MOCK_PACED=$((B + 103))
P_SG=$((B + 200)); P_SG_ADMIN=$((B + 290))
P_NG=$((B + 300)); P_HP=$((B + 400)); P_HB=$((B + 500)); P_LL=$((B + 700))

# Pinning: proxies on core 0, mocks and load generators on core 1.
# --one-core puts everything on core 0: req/s then compares whole-path CPU cost per request,
# free of cross-core wake-up latency (large on VMs).
pin_cores "$ONE_CORE"

ensure_tools --oha
has_target litellm && ensure_litellm
build_slotgate
make_work_dir slotgate-e2e
check_ports_free "$P_MOCK_JSON" "$P_MOCK_SSE" "$P_MOCK_PACED" "$P_SG" "$P_SG_ADMIN" $((P_NG + 1)) $((P_NG + 2)) \
  $((P_NG + 3)) $((P_HP + 1)) $((P_HP + 2)) $((P_HP + 3)) "$P_HB" "$P_LL"

# ------------------------------------------------------------------ bodies
"$PY" "$BENCH" body --size 1024 --model bench --max-tokens 16 --out "$WORK/small.json"
"$PY" "$BENCH" body --size 65536 --model bench --max-tokens 16 --out "$WORK/big.json"

# ------------------------------------------------------------------ mocks (core 1)
start_mock() { # port model extra-args...
  local port=$1 model=$2; shift 2
  start_server "$WORK/mock-$port.log" "$LOAD_CPU" "$SG_BIN" --log-level warn mock-backend --port "$port" --model "$model" "$@"
}
# --backend nginx: the JSON workload's backend is nginx answering a fixed ~350-byte chat
# completion (a second, independent setup to check the harness against), not `slotgate mock-backend`.
start_nginx_backend() { # port model
  local dir="$WORK/nginx-backend" answer
  mkdir -p "$dir"
  answer='{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"'"$2"'","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today? I am a fixed answer from nginx."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}}'
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_max_body_size 2m;
  client_body_buffer_size 128k;
  client_body_temp_path $dir/body;
  default_type application/json;
  server {
    listen 127.0.0.1:$1;
    location = /health { return 200 '{}'; }
    location = /v1/models { return 200 '{"object":"list","data":[{"id":"$2","object":"model"}]}'; }
    location / { return 200 '$answer'; }
  }
}
EOF
  start_server "$dir/stdout.log" "$LOAD_CPU" nginx -p "$dir" -c "$dir/nginx.conf"
}
case "$BACKEND" in
  mock) start_mock "$P_MOCK_JSON" bench --tokens 16 --response-bytes "${MOCK_RESPONSE_BYTES:-1024}" ;;
  nginx) start_nginx_backend "$P_MOCK_JSON" bench ;;
  *) echo "$NAME: --backend takes mock or nginx" >&2; exit 2 ;;
esac
PID_OF[direct]=$SERVER_PID
start_mock "$P_MOCK_SSE" bench-sse --tokens "$SSE_EVENTS" --tokens-per-sec 0
start_mock "$P_MOCK_PACED" bench-paced --tokens 100000 --tokens-per-sec "$PACE"
for p in "$P_MOCK_JSON" "$P_MOCK_SSE" "$P_MOCK_PACED"; do
  "$PY" "$BENCH" probe --port "$p" --path /health >/dev/null
done

# ------------------------------------------------------------------ proxies (core 0)
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
  SG_LOG=(--log-level warn)
  [ "$LOGS" = on ] && SG_LOG=()  # the default: info, decision log on
  start_server "$WORK/slotgate.log" "$PROXY_CPU" "$SG_BIN" "${SG_LOG[@]}" "${SG_ARGS[@]}"
  PID_OF[slotgate]=$SERVER_PID
fi

if has_target nginx; then
  start_nginx <<EOF
  upstream json  { server 127.0.0.1:$P_MOCK_JSON;  keepalive 64; keepalive_requests 1000000; }
  upstream sse   { server 127.0.0.1:$P_MOCK_SSE;   keepalive 64; keepalive_requests 1000000; }
  upstream paced { server 127.0.0.1:$P_MOCK_PACED; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$((P_NG + 1)) backlog=4096; location / { proxy_pass http://json; } }
  server { listen 127.0.0.1:$((P_NG + 2)) backlog=4096; location / { proxy_pass http://sse; } }
  server { listen 127.0.0.1:$((P_NG + 3)) backlog=4096; location / { proxy_pass http://paced; } }
EOF
fi

haproxy_common() {
  haproxy_head http
  cat <<EOF
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
  start_haproxy haproxy "$PROXY_CPU"
  PID_OF[haproxy]=$SERVER_PID
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
  start_haproxy haproxy-body "$PROXY_CPU"
  PID_OF[haproxy-body]=$SERVER_PID
fi

if has_target litellm; then
  # LiteLLM proxy (the incumbent), one uvicorn worker on the proxy core, routing on the body's
  # "model" like slotgate: each bench model is an OpenAI-compatible deployment at its mock.
  mkdir -p "$WORK/litellm"
  {
    echo "model_list:"
    for m in "bench:$P_MOCK_JSON" "bench-sse:$P_MOCK_SSE" "bench-paced:$P_MOCK_PACED"; do
      printf '  - model_name: %s\n    litellm_params:\n      model: openai/%s\n      api_base: http://127.0.0.1:%s/v1\n      api_key: none\n' \
        "${m%%:*}" "${m%%:*}" "${m#*:}"
    done
    printf 'litellm_settings:\n  telemetry: false\n'
  } >"$WORK/litellm/config.yaml"
  # No master key (the bench sends no Authorization header): the variable lets it start so.
  # LITELLM_LOCAL_MODEL_COST_MAP: no fetch of the model price list at start (loopback only).
  LL_ENV=(env LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true LITELLM_LOCAL_MODEL_COST_MAP=True)
  [ "$LOGS" = on ] || LL_ENV+=(LITELLM_LOG=ERROR)
  start_server "$WORK/litellm/litellm.log" "$PROXY_CPU" "${LL_ENV[@]}" "$LITELLM_BIN" --config "$WORK/litellm/config.yaml" \
    --host 127.0.0.1 --port "$P_LL" --num_workers 1
  PID_OF[litellm]=$SERVER_PID
fi

port_of() { # target workload(json|sse|paced)
  local off
  case "$2" in json) off=1 ;; sse) off=2 ;; paced) off=3 ;; esac
  case "$1" in
    direct) echo $((B + 100 + off)) ;;
    slotgate) echo "$P_SG" ;;
    nginx) echo $((P_NG + off)) ;;
    haproxy) echo $((P_HP + off)) ;;
    haproxy-body) echo "$P_HB" ;;
    litellm) echo "$P_LL" ;;
  esac
}

IFS=',' read -r -a TLIST <<<"$TARGETS"
wait_ready json sse paced
DRIVER="n/a"
if has_target slotgate; then
  DRIVER=$(slotgate_driver "$P_SG_ADMIN")
  log "slotgate driver: $DRIVER"
fi

# Idle RSS, fresh after start (only readiness probes have been served).
sleep 1
for t in "${TLIST[@]}"; do
  r=$(proc_json "${PID_OF[$t]}")
  emit "{\"target\":\"$t\",\"kind\":\"rss_idle\",${r#\{}"
done

# ------------------------------------------------------------------ loads
log "phase 1: small POST, closed loop, ${CONNS} conns, ${DUR}s x ${REPEATS}"
wrk_phase rps "$WORK/small.json" "$WARM" "$DUR"

log "phase 2: 64 KiB POST, ${CONNS} conns, ${BIG_DUR}s x ${REPEATS}"
wrk_phase big "$WORK/big.json" 1 "$BIG_DUR"

RATE=$(fixed_rate)
latency_phase "phase 3" "latency at a fixed ${RATE} req/s (oha, open loop, CO-corrected), ${LAT_DUR}s x ${REPEATS}" \
  "$RATE" "$REPEATS" "$LAT_DUR"

log "phase 3a: highest open-loop rate with p99 under 1 ms and under 5 ms (oha), ${SLO_STEP}s steps, ${SLO_BISECT} bisections"
slo_phase

log "phase 3b: low concurrency, closed loop at 1 and 4 connections (wrk --latency), ${LAT_DUR}s x ${REPEATS}"
seq_phase "$LAT_DUR"

log "phase 4: SSE, ${SSE_STREAMS} streams x ${SSE_EVENTS} events unpaced; then paced at ${PACE}/s x ${PACED_EVENTS}"
for ((rep = 0; rep < REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do
    sse_run "$rep" "$t" sse sse 60
    sse_run "$rep" "$t" paced paced 60 --max-tokens "$PACED_EVENTS"
  done
done

log "phase 5: RSS with ${HOLD_N} idle keep-alive connections, then ${HOLD_N} open SSE streams"
for t in "${TLIST[@]}"; do
  [ "$t" = direct ] && continue
  if skip_row "$t" hold; then skip_row "$t" hold_streams; continue; fi
  j=$(on_load_core "$PY" "$BENCH" hold --port "$(port_of "$t" json)" --model bench --n "$HOLD_N" \
        --pids "${PID_OF[$t]}" --settle 2 --timeout 30)
  log "  $t hold: $j"
  emit "{\"target\":\"$t\",\"kind\":\"hold\",${j#\{}"
  j=$(on_load_core "$PY" "$BENCH" hold --port "$(port_of "$t" paced)" --model bench-paced --stream \
        --max-tokens 100000 --n "$HOLD_N" --pids "${PID_OF[$t]}" --settle 3 --timeout 30)
  log "  $t hold streams: $j"
  emit "{\"target\":\"$t\",\"kind\":\"hold_streams\",${j#\{}"
done

# The max req/s of phase 1 mostly measures the load side (core 1 saturates first); held to a
# CPU quota, the proxy is what saturates. See bench/e2e/README.md.
log "phase 6: small POST with each proxy held to ${BUDGET_PCT}% of a core (cgroup cpu quota), ${CONNS} conns, ${DUR}s x ${REPEATS}"
budget_phase "$WORK/small.json" "$WARM" "$DUR"

# ------------------------------------------------------------------ report
LOADGEN="wrk 4.1 (closed loop) for req/s; "
if [ "$HAVE_OHA" = 1 ]; then LOADGEN+="$(oha --version 2>/dev/null | awk "NR == 1") (open loop, -q, --latency-correction) for latency; "; fi
LOADGEN+="bench/e2e/bench.py (asyncio) for SSE and RSS"
MODE="$([ "$QUICK" = 1 ] && echo quick || echo full), ${REPEATS} repeat(s), proxies on core $PROXY_CPU, mocks+load on core $LOAD_CPU"
[ -n "$TUNING" ] && MODE+=", tuning $(basename "$TUNING")"
[ "$BACKEND" = nginx ] && MODE+=", small-request backend: nginx fixed answer"
if [ "$LOGS" = on ]; then
  LOGS_TEXT="on, as each is run by default: slotgate decision log (info), nginx access_log combined buffer=64k flush=1s, HAProxy option httplog to stderr, LiteLLM default (uvicorn access log)"
else
  LOGS_TEXT="off (--quiet-logs): slotgate --log-level warn, nginx access_log off, HAProxy log level err, LiteLLM LITELLM_LOG=ERROR"
fi
MACHINE="$(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
VERSIONS="slotgate $("$SG_BIN" --version 2>/dev/null | awk '{print $NF}') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null))"
has_target nginx && VERSIONS+=", $(nginx -v 2>&1 | sed 's/^nginx version: //')"
has_target haproxy && VERSIONS+=", HAProxy $(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')"
has_target litellm && VERSIONS+=", LiteLLM $LITELLM_VERSION"
[ -n "$BUDGET_SKIPPED" ] && NOTES+="No row for the proxy held to $BUDGET_PCT% of a core: $BUDGET_SKIPPED. "
"$PY" - "$RESULTS" "$DRIVER" "$MODE" "$LOADGEN" "$RATE" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$BUDGET_PCT" "$NOTES" "$MACHINE" "$CMDLINE" "$LOGS_TEXT" "$VERSIONS" "$SECONDS" "$SLO_STEP" "$SLO_BISECT" <<'EOF'
import json, sys, datetime
(res, driver, mode, loadgen, rate, lb, la, budget, notes, machine, command, logs, versions, elapsed,
 slo_step, slo_bisect) = sys.argv[1:17]
meta = {"kind": "meta", "driver": driver, "mode": mode, "loadgen": loadgen,
        "fixed_rate": int(rate), "load_before": lb, "load_after": la,
        "when": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "budget_pct": int(budget),
        "machine": machine, "command": command, "logs": logs, "versions": versions,
        "elapsed_s": int(elapsed), "slo_step_s": int(slo_step), "slo_bisect": int(slo_bisect)}
if notes.strip():
    meta["notes"] = notes.strip()
with open(res, "a") as f:
    f.write(json.dumps(meta) + "\n")
EOF
mkdir -p "$(dirname "$OUT")"
"$PY" "$BENCH" report --results "$RESULTS" --out "$OUT" --targets-file
cp "$RESULTS" "${OUT%.md}.jsonl"
log "table written to $OUT (raw: ${OUT%.md}.jsonl)"
