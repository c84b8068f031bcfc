# Scaffolding shared by the end-to-end harness scripts (run.sh, run_tls.sh); sourced, never run.
# Options, core pinning, tools and build, the work dir and its cleanup trap, server start-up,
# nginx/HAProxy config heads, the wrk/oha/SSE loads, and the proxy CPU budget (a cgroup cpu
# quota). The sourcing script sets NAME, LOG_TAG, TARGETS and OUT before it parses options, and
# TLS_CA (empty: plain HTTP) and port_of before the loads. See bench/e2e/README.md.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
BENCH="$HERE/bench.py"

QUICK=0
REPEATS=""
BUILD=1
INSTALL=1
KEEP=0
BUDGET_PCT=30      # proxy-bound phase: CPU quota of the proxy under test, % of one core
BUDGET_PERIOD_US=10000
BUDGET_SKIPPED=""  # why the proxy-bound phase did not run, if it did not
CONNS=64
SSE_STREAMS=200
SSE_EVENTS=500
TLS_CA=""          # CA file when the proxies are spoken to over HTTPS
declare -A PID_OF  # target -> pid of the process (tree) under test
PIDS=()            # every process this script started, stopped by the cleanup trap

# Request logs as each proxy's users run them (a benchmark is only as honest as its
# defaults): slotgate's decision log on (its default), nginx `access_log ... buffer=64k flush=1s`,
# HAProxy `option httplog` to stderr. `--quiet-logs` turns all three off.
LOGS=${LOGS:-on}

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
has_target() { case ",$TARGETS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# One option both scripts take; OPT_ARGS says how many words it used. The script handles its
# own options first and hands every other one here.
common_option() {
  OPT_ARGS=1
  case "$1" in
    --quick) QUICK=1 ;;
    --targets) TARGETS="$2"; OPT_ARGS=2 ;;
    --repeats) REPEATS="$2"; OPT_ARGS=2 ;;
    --out) OUT="$2"; OPT_ARGS=2 ;;
    --budget) BUDGET_PCT="$2"; OPT_ARGS=2; check_budget ;;
    --no-build) BUILD=0 ;;
    --quiet-logs) LOGS=off ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "$NAME: unknown option $1" >&2; exit 2 ;;
  esac
}
check_budget() {
  if ! [[ "$BUDGET_PCT" =~ ^[0-9]+$ ]] || [ "$BUDGET_PCT" -lt 1 ] || [ "$BUDGET_PCT" -gt 100 ]; then
    echo "$NAME: --budget takes a whole percentage of one core, 1 to 100" >&2; exit 2
  fi
}

# Pinning: proxies on core 0, mocks and load generators on core 1 (all on core 0 when $1 = 1 or
# on one core). Every benchmark process runs at nice -20 (when root) so that other work on a
# shared machine (compiles...) preempts proxies, mocks and load generators alike as little as
# possible.
pin_cores() { # one_core(0|1)
  if [ "$(nproc)" -ge 2 ] && [ "$1" = 0 ]; then PROXY_CPU=0; LOAD_CPU=1; else PROXY_CPU=0; LOAD_CPU=0; fi
  NICE=()
  if [ "$(id -u)" = 0 ]; then NICE=(nice -n -20); fi
}
on_load_core() { "${NICE[@]}" taskset -c "$LOAD_CPU" "$@"; }

# ------------------------------------------------------------------ tools and build
ensure_tools() { # [--oha] [extra Debian packages...]
  local oha=0 missing=()
  if [ "${1-}" = --oha ]; then oha=1; shift; fi
  export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
  command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  local pkg
  for pkg in "$@"; do command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    [ "$INSTALL" = 1 ] || { echo "$NAME: missing ${missing[*]} (and --no-install)" >&2; exit 1; }
    log "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null || {
      # nginx-light is a transitional package on some releases; plain nginx is the fallback.
      local alt=("${missing[@]/nginx-light/nginx}")
      apt-get install -y -qq "${alt[@]}" >/dev/null
    }
  fi
  if [ "$oha" = 1 ] && ! command -v oha >/dev/null 2>&1 && [ "$INSTALL" = 1 ]; then
    log "installing oha (open-loop load generator) from crates.io"
    cargo install oha --locked --quiet || log "oha did not install: latency rows will be empty"
  fi
  HAVE_OHA=0; command -v oha >/dev/null 2>&1 && HAVE_OHA=1
  return 0
}

# LiteLLM proxy (the incumbent, target "litellm"): a venv outside the repo, pinned. 1.106.12 is the
# newest release whose [proxy] extra resolves from PyPI here (later ones pin litellm-proxy-extras
# releases PyPI does not have). LITELLM_VENV moves the venv.
LITELLM_VERSION=1.106.12
LITELLM_VENV="${LITELLM_VENV:-$HOME/.cache/slotgate-bench/litellm-venv}"
NOTES=""           # extra notes under the table
ensure_litellm() { # sets LITELLM_BIN; without it litellm leaves TARGETS and a note says why
  LITELLM_BIN="$LITELLM_VENV/bin/litellm"
  local have=""
  [ -x "$LITELLM_VENV/bin/python" ] && have=$("$LITELLM_VENV/bin/python" -c \
    'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)
  if [ "$have" != "$LITELLM_VERSION" ] && [ "$INSTALL" = 1 ]; then
    log "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (PyPI; once, 1-3 minutes)"
    { "$PY" -m venv "$LITELLM_VENV" && "$LITELLM_VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"; } \
      >"$LITELLM_VENV.install.log" 2>&1 || log "litellm did not install (log: $LITELLM_VENV.install.log)"
    have=$("$LITELLM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)
  fi
  if [ "$have" != "$LITELLM_VERSION" ] || [ ! -x "$LITELLM_BIN" ]; then
    TARGETS=$(echo ",$TARGETS," | sed 's/,litellm,/,/; s/^,//; s/,$//')
    NOTES+="No LiteLLM column: litellm[proxy]==$LITELLM_VERSION is not installed in $LITELLM_VENV. "
    log "litellm left out: not installed"
  fi
  return 0
}

build_slotgate() { # sets SG_BIN
  if [ "$BUILD" = 1 ]; then
    log "building slotgate (release)"
    (cd "$ROOT" && cargo build --release --quiet)
  fi
  SG_BIN="${SLOTGATE_BIN:-$ROOT/target/release/slotgate}"
  [ -x "$SG_BIN" ] || { echo "$NAME: no $SG_BIN" >&2; exit 1; }
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# ------------------------------------------------------------------ work dir + cleanup
make_work_dir() { # mktemp-prefix; sets WORK, RESULTS, LOAD_BEFORE and the cleanup trap
  LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
  WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
  RESULTS="$WORK/results.jsonl"
  : >"$RESULTS"
  trap cleanup EXIT
  # An interrupted run fails (128 + signal) and keeps its work dir.
  trap 'cleanup 130' INT
  trap 'cleanup 143' TERM
}
cleanup() { # [exit code, for a signal]
  local rc=${1:-$?}
  trap - EXIT INT TERM
  cgroup_release
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + 5))
  for p in "${PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}

# Fail fast if a port is taken (e.g. by a run that was killed with SIGKILL).
check_ports_free() { # port...
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$NAME: port $p is in use; stop what holds it or set E2E_PORT_BASE" >&2
      exit 1
    fi
  done
}

# ------------------------------------------------------------------ servers
# Start a server in the background, pinned and niced; SERVER_PID is the server's own pid (nice
# and taskset exec), and the cleanup trap stops it.
start_server() { # log cpu command...
  local out=$1 cpu=$2; shift 2
  "${NICE[@]}" taskset -c "$cpu" "$@" >"$out" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}

# nginx with one worker on the proxy core; the script gives the rest of the http block (upstreams,
# servers, TLS) on stdin.
start_nginx() {
  mkdir -p "$WORK/nginx"
  {
    cat <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  $([ "$LOGS" = on ] && echo "access_log $WORK/nginx/access.log combined buffer=64k flush=1s;" || echo "access_log off;")
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_max_body_size 2m;
  client_body_buffer_size 128k;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
  proxy_read_timeout 120s;
EOF
    cat
    echo "}"
  } >"$WORK/nginx/nginx.conf"
  start_server "$WORK/nginx/stdout.log" "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
  PID_OF[nginx]=$SERVER_PID
}

haproxy_head() { # mode(http|tcp): the global and defaults sections
  cat <<EOF
global
  nbthread 1
  maxconn 8000
  log stderr format raw local0 $([ "$LOGS" = on ] && echo info || echo err)
defaults
  mode $1
  log global
  timeout connect 5s
  timeout client 120s
  timeout server 120s
EOF
  if [ "$1" = http ]; then printf '  timeout http-keep-alive 120s\n  http-reuse always\n'; fi
  if [ "$1" = http ] && [ "$LOGS" = on ]; then printf '  option httplog\n'; fi
}

start_haproxy() { # name cpu: checks and starts $WORK/NAME.cfg, logs to $WORK/NAME.log
  haproxy -c -q -f "$WORK/$1.cfg"
  start_server "$WORK/$1.log" "$2" haproxy -db -f "$WORK/$1.cfg"
}

model_of() { case "$1" in json) echo bench ;; sse) echo bench-sse ;; paced) echo bench-paced ;; esac; }
url_of() { # target: the chat-completions URL of its json workload
  echo "$([ -n "$TLS_CA" ] && echo https || echo http)://127.0.0.1:$(port_of "$1" json)/v1/chat/completions"
}
tls_args() { [ -z "$TLS_CA" ] || echo "--tls-ca $TLS_CA"; }

wait_ready() { # workload...: every target answers a POST for each workload's model
  local t w
  log "waiting for ${TARGETS}$([ -n "$TLS_CA" ] && echo ' (HTTPS both sides)')"
  for t in "${TLIST[@]}"; do
    for w in "$@"; do
      # shellcheck disable=SC2046
      "$PY" "$BENCH" probe $(tls_args) --port "$(port_of "$t" "$w")" --model "$(model_of "$w")" --deadline 90 >/dev/null \
        || { echo "$NAME: $t did not become ready for $w (logs in $WORK)" >&2; exit 1; }
    done
  done
}

slotgate_driver() { # admin port -> the IO driver slotgate reports
  "$PY" "$BENCH" probe --port "$1" --path /readyz | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("driver","?"))'
}

# ------------------------------------------------------------------ loads
emit() { echo "$1" >>"$RESULTS"; }
proc_json() { "$PY" "$BENCH" proc --pids "$1"; }
order_for_rep() { # rotate the order each repeat so drift hits every target alike
  local rep=$1 n=${#TLIST[@]} i
  for ((i = 0; i < n; i++)); do echo "${TLIST[$(((i + rep) % n))]}"; done
}

# Phases a target sits out, and why (empty: it takes part). The table shows "skipped (n)" with the
# reason under it instead of a blank. LiteLLM serves ~30-100 req/s on one core: loads sized for
# proxies ~1,000x faster would take minutes or measure nothing but its queue.
skip_reason() { # target kind
  [ "$1" = litellm ] || return 0
  case "$2" in
    lat) echo "the fixed rate is hundreds of times LiteLLM's capacity: its queue would grow for the whole run (p99 = the run's length); its p99-bound rows are its latency figure" ;;
    hold|hold_streams) echo "LiteLLM needs 10-35 s to answer the 1,000 requests that open the connections (1,000 streams' first events ~40 s), so the RSS would be read while they are still being opened" ;;
    sse) echo "200 unpaced streams x 500 events (100,000 events) through LiteLLM take minutes at ~400-1,000 events/s" ;;
  esac
}
skip_row() { # target kind: emit a "skipped" row when skip_reason says so; status 0 = skipped
  local why
  why=$(skip_reason "$1" "$2")
  [ -n "$why" ] || return 1
  emit "{\"target\":\"$1\",\"kind\":\"$2\",\"skipped\":\"$why\"}"
  log "  $1 $2: skipped ($why)"
}

# Extra wrk arguments for every wrk_* call (e.g. -H "Connection: close"); empty by default.
WRK_EXTRA=()

wrk_warm() { # target body seconds
  BODY_FILE="$2" on_load_core wrk -t1 -c"$CONNS" -d"${3}s" "${WRK_EXTRA[@]}" -s "$HERE/post.lua" "$(url_of "$1")" >/dev/null
}

wrk_run() { # target body seconds -> JSON: rps, requests, errors, CPU/request of the target's processes
  local t=$1 body=$2 dur=$3 out c0 c1
  c0=$(proc_json "${PID_OF[$t]}")
  out=$(BODY_FILE="$body" on_load_core wrk -t1 -c"$CONNS" -d"${dur}s" --timeout 5s "${WRK_EXTRA[@]}" -s "$HERE/post.lua" "$(url_of "$t")")
  c1=$(proc_json "${PID_OF[$t]}")
  "$PY" - "$out" "$c0" "$c1" <<'EOF'
import json, re, sys
out, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
n = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
cpu_us = (c1["cpu_ns"] - c0["cpu_ns"]) / 1e3
print(json.dumps({"rps": rps, "requests": n, "non2xx": int(non2xx.group(1)) if non2xx else 0,
                  "socket_errors": sock.group(1) if sock else "", "cpu_us_per_req": cpu_us / n if n else None,
                  "rss_kib": c1["rss_kib"]}))
EOF
}

wrk_phase() { # kind body warm-up-seconds seconds: closed loop on every target, REPEATS times
  local kind=$1 body=$2 warm=$3 dur=$4 rep t j
  for ((rep = 0; rep < REPEATS; rep++)); do
    for t in $(order_for_rep "$rep"); do
      if [ "$rep" = 0 ] && skip_row "$t" "$kind"; then continue; fi
      [ -n "$(skip_reason "$t" "$kind")" ] && continue
      wrk_warm "$t" "$body" "$warm"
      j=$(wrk_run "$t" "$body" "$dur")
      log "  $t $kind: $j"
      emit "{\"target\":\"$t\",\"kind\":\"$kind\",\"rep\":$rep,${j#\{}"
    done
  done
}

fixed_rate() { # half the lowest peak of the "rps" rows, rounded down to a multiple of 500
  # (LiteLLM, ~30 req/s, is left out: it is skipped at this rate, see run.sh)
  "$PY" - "$RESULTS" <<'EOF'
import json, sys
peaks = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("kind") == "rps" and r["target"] != "litellm":
        peaks[r["target"]] = max(peaks.get(r["target"], 0), r["rps"])
print(max(500, int(min(peaks.values()) * 0.5) // 500 * 500))
EOF
}

peak_of() { # target -> its best closed-loop req/s in phase 1 (0 when it has none)
  "$PY" - "$RESULTS" "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(int(max([r.get("rps") or 0 for r in rows if r.get("kind") == "rps" and r["target"] == sys.argv[2]] or [0])))
EOF
}

# The highest offered rate each target holds with p99 under 1 ms and under 5 ms (open loop, oha
# --latency-correction). One bounded search per target (bench.py ratesearch): doubling from 1/16
# of the target's closed-loop peak (phase 1) until p99 >= 5 ms or 1.5x that peak, then SLO_BISECT
# geometric bisections per bound; every step SLO_STEP seconds, a step that misses a bound tried
# SLO_RETRIES more times (the best try kept). Not repeated: one search is already 10-20 runs.
SLO_STEP=3
SLO_BISECT=4
SLO_RETRIES=1
slo_phase() {
  local t peak start max j insecure=()
  if [ "$HAVE_OHA" != 1 ]; then log "  skipped: oha not available"; return 0; fi
  [ -n "$TLS_CA" ] && insecure=(--insecure)
  for t in "${TLIST[@]}"; do
    peak=$(peak_of "$t")
    [ "$peak" -gt 0 ] || peak=16000
    start=$((peak / 16)); [ "$start" -ge 2 ] || start=2
    max=$((peak * 3 / 2))
    j=$(on_load_core "$PY" "$BENCH" ratesearch --url "$(url_of "$t")" --body "$WORK/small.json" --conns "$CONNS" \
          --bounds 1,5 --start "$start" --max "$max" --step-s "$SLO_STEP" --bisect "$SLO_BISECT" --retries "$SLO_RETRIES" "${insecure[@]}" \
          2>>"$WORK/ratesearch.log") || j='{"error":"ratesearch failed"}'
    log "  $t p99-bound search: $("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps(d.get("bounds", d)), d.get("seconds", "?"), "s")' "$j")"
    emit "{\"target\":\"$t\",\"kind\":\"slo\",${j#\{}"
  done
}

seq_phase() { # seconds: closed loop at concurrency 1 and 4 (a sequential client per connection), wrk --latency
  local dur=$1 rep t c out j
  for c in 1 4; do
    for ((rep = 0; rep < REPEATS; rep++)); do
      for t in $(order_for_rep "$rep"); do
        BODY_FILE="$WORK/small.json" on_load_core wrk -t1 -c"$c" -d1s "${WRK_EXTRA[@]}" -s "$HERE/post.lua" "$(url_of "$t")" >/dev/null
        out=$(BODY_FILE="$WORK/small.json" on_load_core wrk -t1 -c"$c" -d"${dur}s" --latency --timeout 5s "${WRK_EXTRA[@]}" \
              -s "$HERE/post.lua" "$(url_of "$t")")
        j=$("$PY" - "$out" <<'EOF'
import json, re, sys
out = sys.argv[1]
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def pct(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(m.group(1)) * unit[m.group(2)] if m else None
rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
print(json.dumps({"p50_ms": pct(50), "p99_ms": pct(99), "rps": float(rps.group(1)) if rps else None}))
EOF
)
        log "  $t c=$c: $j"
        emit "{\"target\":\"$t\",\"kind\":\"seq$c\",\"rep\":$rep,${j#\{}"
      done
    done
  done
}

latency_phase() { # phase description rate repeats seconds: oha open loop at a fixed rate, CO-corrected
  local rate=$3 reps=$4 dur=$5 rep t j insecure=()
  if [ "$HAVE_OHA" != 1 ]; then log "$1 skipped: oha not available"; return 0; fi
  log "$1: $2"
  [ -n "$TLS_CA" ] && insecure=(--insecure)
  for ((rep = 0; rep < reps; rep++)); do
    for t in $(order_for_rep "$rep"); do
      if [ "$rep" = 0 ] && skip_row "$t" lat; then continue; fi
      [ -n "$(skip_reason "$t" lat)" ] && continue
      on_load_core oha --no-tui --output-format json -z "${dur}s" -c "$CONNS" -q "$rate" --latency-correction \
        "${insecure[@]}" -m POST -H 'Content-Type: application/json' -D "$WORK/small.json" \
        "$(url_of "$t")" >"$WORK/oha-$t-$rep.json" 2>"$WORK/oha-$t-$rep.err" || true
      j=$("$PY" - "$WORK/oha-$t-$rep.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(json.dumps({"error": str(e)})); sys.exit()
lp = d.get("latencyPercentiles", {})
s = d.get("summary", {})
codes = d.get("statusCodeDistribution", {})
print(json.dumps({"p50_ms": (lp.get("p50") or 0) * 1e3, "p99_ms": (lp.get("p99") or 0) * 1e3,
                  "p999_ms": (lp.get("p99.9") or 0) * 1e3, "achieved_rps": s.get("requestsPerSec"),
                  "success": s.get("successRate"), "codes": codes}))
EOF
)
      log "  $t lat: $j"
      emit "{\"target\":\"$t\",\"kind\":\"lat\",\"rep\":$rep,${j#\{}"
    done
  done
}

sse_run() { # rep target kind workload timeout [bench.py sse args...]: one batch of SSE streams
  local rep=$1 t=$2 kind=$3 w=$4 timeout=$5 j c0="" c1=""; shift 5
  if [ -n "$(skip_reason "$t" "$kind")" ]; then
    [ "$rep" = 0 ] && skip_row "$t" "$kind"
    return 0
  fi
  [ -n "${PID_OF[$t]:-}" ] && c0=$(proc_json "${PID_OF[$t]}")
  # shellcheck disable=SC2046
  j=$(on_load_core "$PY" "$BENCH" sse $(tls_args) --port "$(port_of "$t" "$w")" --model "$(model_of "$w")" \
        --streams "$SSE_STREAMS" "$@" --timeout "$timeout")
  if [ -n "$c0" ]; then
    # The proxy's CPU per relayed event (the events/s figure is bounded by the Python client).
    c1=$(proc_json "${PID_OF[$t]}")
    j=$("$PY" - "$j" "$c0" "$c1" <<'EOF'
import json, sys
j, c0, c1 = (json.loads(a) for a in sys.argv[1:4])
ev = j.get("events") or 0
j["cpu_us_per_event"] = (c1["cpu_ns"] - c0["cpu_ns"]) / 1e3 / ev if ev else None
print(json.dumps(j))
EOF
)
  fi
  log "  $t $kind: $j"
  emit "{\"target\":\"$t\",\"kind\":\"$kind\",\"rep\":$rep,${j#\{}"
}

# ------------------------------------------------------------------ proxy CPU budget (cgroup)
# The proxy under test (every thread of its process tree) goes into a cpu cgroup with a CFS
# quota of BUDGET_PCT % of one core, so the proxy, not the load side, is what saturates.
# cgroup v1 (cpu controller at /sys/fs/cgroup/cpu: cpu.cfs_period_us / cpu.cfs_quota_us, threads
# moved through `tasks`) or v2 (/sys/fs/cgroup a cgroup2 mount: cpu.max, cgroup.procs).
CG_KIND=""   # v1 | v2 once cgroup_detect succeeded
CG_BASE=""   # hierarchy root: threads go back here
CG_DIR=""    # the budget cgroup while a target is held in it
CG_WHY=""    # why the phase cannot run

cgroup_detect() { # sets CG_KIND and CG_BASE, or CG_WHY and returns 1
  if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
    CG_KIND=v2; CG_BASE=/sys/fs/cgroup
    if ! grep -qw cpu "$CG_BASE/cgroup.controllers" 2>/dev/null; then
      CG_WHY="cgroup v2 at $CG_BASE has no cpu controller"; return 1
    fi
    if ! grep -qw cpu "$CG_BASE/cgroup.subtree_control" 2>/dev/null \
      && ! echo +cpu 2>/dev/null >"$CG_BASE/cgroup.subtree_control"; then
      CG_WHY="cannot enable the cpu controller in $CG_BASE/cgroup.subtree_control"; return 1
    fi
  elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    CG_KIND=v1; CG_BASE=/sys/fs/cgroup/cpu
  else
    CG_WHY="no cgroup cpu controller (neither /sys/fs/cgroup/cpu nor a cgroup2 /sys/fs/cgroup)"; return 1
  fi
  local probe="$CG_BASE/slotgate-e2e-$$-probe"
  if ! mkdir "$probe" 2>/dev/null; then
    CG_WHY="the cgroup cpu controller at $CG_BASE is not writable (root needed)"; CG_KIND=""; return 1
  fi
  rmdir "$probe"
  # Budget cgroups of runs that were killed with SIGKILL: empty, their owner gone.
  local d owner
  for d in "$CG_BASE"/slotgate-e2e-*; do
    [ -d "$d" ] || continue
    owner=${d##*/slotgate-e2e-}; owner=${owner%%-*}
    kill -0 "$owner" 2>/dev/null || rmdir "$d" 2>/dev/null || true
  done
}

cgroup_hold() { # pid: its process tree into a fresh budget cgroup; CG_MOVED/CG_LEFT = threads moved/not
  local pid=$1 p tid quota=$((BUDGET_PERIOD_US * BUDGET_PCT / 100))
  CG_DIR="$CG_BASE/slotgate-e2e-$$-budget"
  mkdir "$CG_DIR"
  if [ "$CG_KIND" = v1 ]; then
    echo "$BUDGET_PERIOD_US" >"$CG_DIR/cpu.cfs_period_us"
    echo "$quota" >"$CG_DIR/cpu.cfs_quota_us"
  else
    echo "$quota $BUDGET_PERIOD_US" >"$CG_DIR/cpu.max"
  fi
  CG_MOVED=0; CG_LEFT=0
  for p in $("$PY" "$BENCH" tree --pid "$pid"); do
    for tid in $(ls "/proc/$p/task" 2>/dev/null); do
      # v2: cgroup.procs takes the process with all its threads. Threads that refuse to move
      # (io_uring's iou-wrk workers may) are counted in CG_LEFT.
      if [ "$CG_KIND" = v2 ]; then
        [ "$tid" = "$p" ] && echo "$p" 2>/dev/null >"$CG_DIR/cgroup.procs"
      else
        echo "$tid" 2>/dev/null >"$CG_DIR/tasks"
      fi
      if grep -qx "$tid" "$CG_DIR/$([ "$CG_KIND" = v2 ] && echo cgroup.threads || echo tasks)"; then
        CG_MOVED=$((CG_MOVED + 1))
      else
        CG_LEFT=$((CG_LEFT + 1))
      fi
    done
  done
}

cgroup_throttled() { # periods the budget cgroup was throttled in so far
  awk '$1 == "nr_throttled" {print $2}' "$CG_DIR/cpu.stat"
}

cgroup_release() { # every thread back to the root cgroup, then the budget cgroup removed
  [ -n "$CG_DIR" ] && [ -d "$CG_DIR" ] || { CG_DIR=""; return 0; }
  local file=tasks id i
  [ "$CG_KIND" = v2 ] && file=cgroup.procs
  for id in $(cat "$CG_DIR/$file" 2>/dev/null); do echo "$id" 2>/dev/null >"$CG_BASE/$file" || true; done
  for ((i = 0; i < 20; i++)); do rmdir "$CG_DIR" 2>/dev/null && break; sleep 0.1; done
  [ -d "$CG_DIR" ] && log "could not remove $CG_DIR"
  CG_DIR=""
}

budget_phase() { # body warm-up-seconds seconds: closed-loop wrk on every proxy held to the budget
  local body=$1 warm=$2 dur=$3 rep t j th0 th1 share
  if ! cgroup_detect; then
    BUDGET_SKIPPED="$CG_WHY"
    log "  skipped: $CG_WHY"
    return 0
  fi
  for ((rep = 0; rep < REPEATS; rep++)); do
    for t in $(order_for_rep "$rep"); do
      [ "$t" = direct ] && continue # no proxy to hold
      if [ "$rep" = 0 ] && skip_row "$t" capped; then continue; fi
      [ -n "$(skip_reason "$t" capped)" ] && continue
      cgroup_hold "${PID_OF[$t]}"
      wrk_warm "$t" "$body" "$warm"
      th0=$(cgroup_throttled)
      j=$(wrk_run "$t" "$body" "$dur")
      th1=$(cgroup_throttled)
      cgroup_release
      # The share of one core the proxy got while measured: the quota at work when near BUDGET_PCT.
      share=$("$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); c=j["cpu_us_per_req"]
print(round(c * j["requests"] / 1e6 / float(sys.argv[2]), 3) if c else "null")' "$j" "$dur")
      j="{\"budget_pct\":$BUDGET_PCT,\"cgroup\":\"$CG_KIND\",\"threads\":$CG_MOVED,\"threads_left\":$CG_LEFT,\"cpu_share\":$share,\"nr_throttled\":$((th1 - th0)),${j#\{}"
      log "  $t capped: $j"
      emit "{\"target\":\"$t\",\"kind\":\"capped\",\"rep\":$rep,${j#\{}"
    done
  done
}
