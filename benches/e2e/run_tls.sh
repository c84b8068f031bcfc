#!/usr/bin/env bash
# End-to-end benchmark over HTTPS (issue 9): slotgate vs nginx vs HAProxy, each terminating TLS
# from the client AND originating TLS to the upstream, measured in one run, loopback only.
#
#   benches/e2e/run_tls.sh            # ~3 minutes
#   benches/e2e/run_tls.sh --quick    # ~1.5 minutes, shorter loads, fewer repeats
#
# Options: --targets slotgate,nginx,haproxy  --repeats N  --out FILE  --no-build  --keep
# Layout (same as run.sh): every proxy under test pinned to core 0 (one worker each); the
# mocks, the load generators and the TLS front of the mocks on core 1.
#
#   client --HTTPS--> proxy under test (core 0) --HTTPS--> TLS front --HTTP--> mock-backend
#
# The TLS front is one HAProxy in `mode tcp` (`bind ... ssl crt`): it only decrypts and passes
# bytes 1:1 (one plain connection per TLS connection, no HTTP parsing), so keep-alive and
# connection reuse toward the mock behave exactly as without TLS, and all three proxies
# originate TLS to the very same endpoint. A CA and a server certificate for 127.0.0.1 /
# localhost (ECDSA P-256) are generated with openssl into the run's temp dir.
# Every load is bounded in time; every process this script starts is stopped on exit.
# Not run in CI. See benches/e2e/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
BENCH="$HERE/bench.py"

QUICK=0
TARGETS="slotgate,nginx,haproxy"
REPEATS=""
OUT="$HERE/results/tls-latest.md"
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --targets) TARGETS="$2"; shift ;;
    --repeats) REPEATS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run_tls.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  WARM=1; DUR=4; LAT_DUR=4; REPEATS="${REPEATS:-1}"
else
  WARM=2; DUR=5; LAT_DUR=5; REPEATS="${REPEATS:-3}"
fi
LAT_REPEATS=$((REPEATS < 2 ? REPEATS : 2))
CONNS=64
SSE_STREAMS=200
SSE_EVENTS=500

B="${E2E_PORT_BASE:-18000}"
P_MOCK_JSON=$((B + 601)); P_MOCK_SSE=$((B + 602))
P_FRONT_JSON=$((B + 611)); P_FRONT_SSE=$((B + 612))
P_SG=$((B + 620)); P_SG_ADMIN=$((B + 621))
P_NG=$((B + 630)); P_HP=$((B + 640))

if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=0; LOAD_CPU=1; else PROXY_CPU=0; LOAD_CPU=0; fi
NICE=()
if [ "$(id -u)" = 0 ]; then NICE=(nice -n -20); fi
on_load_core() { "${NICE[@]}" taskset -c "$LOAD_CPU" "$@"; }
log() { printf '[e2e-tls %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
HAVE_OHA=0; command -v oha >/dev/null 2>&1 && HAVE_OHA=1
if [ "$BUILD" = 1 ]; then
  log "building slotgate (release)"
  (cd "$ROOT" && cargo build --release --quiet)
fi
SG_BIN="${SLOTGATE_BIN:-$ROOT/target/release/slotgate}"
[ -x "$SG_BIN" ] || { echo "run_tls.sh: no $SG_BIN" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
WORK="$(mktemp -d /tmp/slotgate-e2e-tls.XXXXXX)"
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

for p in "$P_MOCK_JSON" "$P_MOCK_SSE" "$P_FRONT_JSON" "$P_FRONT_SSE" "$P_SG" "$P_SG_ADMIN" \
  $((P_NG + 1)) $((P_NG + 2)) $((P_HP + 1)) $((P_HP + 2)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "run_tls.sh: port $p is in use; stop what holds it or set E2E_PORT_BASE" >&2
    exit 1
  fi
done

# ------------------------------------------------------------------ certificates
PKI="$WORK/pki"; mkdir -p "$PKI"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$PKI/ca.key" -out "$PKI/ca.pem" -subj "/CN=slotgate e2e CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$PKI/key.pem" -out "$PKI/srv.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$PKI/ext.cnf"
openssl x509 -req -in "$PKI/srv.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
  -extfile "$PKI/ext.cnf" -out "$PKI/cert.pem" 2>/dev/null
cat "$PKI/cert.pem" "$PKI/key.pem" >"$PKI/combined.pem"
CA="$PKI/ca.pem"

"$PY" "$BENCH" body --size 1024 --model bench --max-tokens 16 --out "$WORK/small.json"

# ------------------------------------------------------------------ mocks + TLS front (core 1)
"${NICE[@]}" taskset -c "$LOAD_CPU" "$SG_BIN" --log-level warn mock-backend --port "$P_MOCK_JSON" --model bench \
  --tokens 16 --response-bytes 1024 >"$WORK/mock-json.log" 2>&1 &
PIDS+=($!)
"${NICE[@]}" taskset -c "$LOAD_CPU" "$SG_BIN" --log-level warn mock-backend --port "$P_MOCK_SSE" --model bench-sse \
  --tokens "$SSE_EVENTS" --tokens-per-sec 0 >"$WORK/mock-sse.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/front.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
  log stderr format raw local0 err
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend t_json
  bind 127.0.0.1:$P_FRONT_JSON ssl crt $PKI/combined.pem alpn http/1.1
  default_backend m_json
frontend t_sse
  bind 127.0.0.1:$P_FRONT_SSE ssl crt $PKI/combined.pem alpn http/1.1
  default_backend m_sse
backend m_json
  server s1 127.0.0.1:$P_MOCK_JSON
backend m_sse
  server s1 127.0.0.1:$P_MOCK_SSE
EOF
haproxy -c -q -f "$WORK/front.cfg"
"${NICE[@]}" taskset -c "$LOAD_CPU" haproxy -db -f "$WORK/front.cfg" >"$WORK/front.log" 2>&1 &
PIDS+=($!)
for p in "$P_MOCK_JSON" "$P_MOCK_SSE"; do "$PY" "$BENCH" probe --port "$p" --path /health >/dev/null; done
for p in "$P_FRONT_JSON" "$P_FRONT_SSE"; do "$PY" "$BENCH" probe --tls-ca "$CA" --port "$p" --path /health >/dev/null; done

# ------------------------------------------------------------------ proxies under test (core 0)
has_target() { case ",$TARGETS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
declare -A PID_OF
if has_target slotgate; then
  cat >"$WORK/slotgate.toml" <<EOF
[listen]
addr = "127.0.0.1:$P_SG"
admin = "127.0.0.1:$P_SG_ADMIN"
tls_cert = "$PKI/cert.pem"
tls_key = "$PKI/key.pem"

[routing]
default_slot = "json"

[[upstream]]
name = "json"
kind = "container"
url = "https://127.0.0.1:$P_FRONT_JSON/v1"
ca_file = "$CA"
pool_max_idle = 64

[[upstream]]
name = "sse"
kind = "container"
url = "https://127.0.0.1:$P_FRONT_SSE/v1"
ca_file = "$CA"
pool_max_idle = 64

[tuning]
cores = 1
EOF
  "${NICE[@]}" taskset -c "$PROXY_CPU" "$SG_BIN" --log-level warn serve --config "$WORK/slotgate.toml" \
    >"$WORK/slotgate.log" 2>&1 &
  PIDS+=($!); PID_OF[slotgate]=$!
fi
if has_target nginx; then
  mkdir -p "$WORK/nginx"
  # proxy_ssl_name: nginx checks DNS names only, so it verifies "localhost" (also in the SAN).
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
  ssl_certificate $PKI/cert.pem;
  ssl_certificate_key $PKI/key.pem;
  ssl_session_cache shared:SSL:1m;
  upstream json { server 127.0.0.1:$P_FRONT_JSON; keepalive 64; keepalive_requests 1000000; }
  upstream sse  { server 127.0.0.1:$P_FRONT_SSE;  keepalive 64; keepalive_requests 1000000; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_buffering off;
  proxy_read_timeout 120s;
  proxy_ssl_trusted_certificate $CA;
  proxy_ssl_verify on;
  proxy_ssl_name localhost;
  proxy_ssl_server_name on;
  proxy_ssl_session_reuse on;
  server { listen 127.0.0.1:$((P_NG + 1)) ssl backlog=4096; location / { proxy_pass https://json; } }
  server { listen 127.0.0.1:$((P_NG + 2)) ssl backlog=4096; location / { proxy_pass https://sse; } }
}
EOF
  "${NICE[@]}" taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/stdout.log" 2>&1 &
  PIDS+=($!); PID_OF[nginx]=$!
fi
if has_target haproxy; then
  cat >"$WORK/haproxy.cfg" <<EOF
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
frontend f_json
  bind 127.0.0.1:$((P_HP + 1)) ssl crt $PKI/combined.pem alpn http/1.1
  default_backend json
frontend f_sse
  bind 127.0.0.1:$((P_HP + 2)) ssl crt $PKI/combined.pem alpn http/1.1
  default_backend sse
backend json
  server s1 127.0.0.1:$P_FRONT_JSON ssl verify required ca-file $CA verifyhost localhost sni str(localhost) alpn http/1.1
backend sse
  option http-no-delay
  server s1 127.0.0.1:$P_FRONT_SSE ssl verify required ca-file $CA verifyhost localhost sni str(localhost) alpn http/1.1
EOF
  haproxy -c -q -f "$WORK/haproxy.cfg"
  "${NICE[@]}" taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  PIDS+=($!); PID_OF[haproxy]=$!
fi

port_of() { # target workload(json|sse)
  local off; case "$2" in json) off=1 ;; sse) off=2 ;; esac
  case "$1" in slotgate) echo "$P_SG" ;; nginx) echo $((P_NG + off)) ;; haproxy) echo $((P_HP + off)) ;; esac
}
IFS=',' read -r -a TLIST <<<"$TARGETS"
log "waiting for ${TARGETS} (HTTPS both sides)"
for t in "${TLIST[@]}"; do
  "$PY" "$BENCH" probe --tls-ca "$CA" --port "$(port_of "$t" json)" --model bench --deadline 30 >/dev/null \
    && "$PY" "$BENCH" probe --tls-ca "$CA" --port "$(port_of "$t" sse)" --model bench-sse --deadline 30 >/dev/null \
    || { echo "run_tls.sh: $t did not become ready over HTTPS (logs in $WORK)" >&2; KEEP=1; exit 1; }
done

emit() { echo "$1" >>"$RESULTS"; }
proc_json() { "$PY" "$BENCH" proc --pids "$1"; }
order_for_rep() { local rep=$1 n=${#TLIST[@]} i; for ((i = 0; i < n; i++)); do echo "${TLIST[$(((i + rep) % n))]}"; done; }

log "phase 1: small POST over HTTPS, closed loop, ${CONNS} conns, ${DUR}s x ${REPEATS}"
for ((rep = 0; rep < REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do
    url="https://127.0.0.1:$(port_of "$t" json)/v1/chat/completions"
    BODY_FILE="$WORK/small.json" on_load_core wrk -t1 -c"$CONNS" -d"${WARM}s" -s "$HERE/post.lua" "$url" >/dev/null
    c0=$(proc_json "${PID_OF[$t]}")
    out=$(BODY_FILE="$WORK/small.json" on_load_core wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 5s -s "$HERE/post.lua" "$url")
    c1=$(proc_json "${PID_OF[$t]}")
    j=$("$PY" - "$out" "$c0" "$c1" <<'EOF'
import json, re, sys
out, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
n = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
cpu_us = (c1["cpu_ticks"] - c0["cpu_ticks"]) / c0["clk_tck"] * 1e6
print(json.dumps({"rps": rps, "requests": n, "non2xx": int(non2xx.group(1)) if non2xx else 0,
                  "socket_errors": sock.group(1) if sock else "", "cpu_us_per_req": cpu_us / n if n else None}))
EOF
)
    log "  $t rps: $j"
    emit "{\"target\":\"$t\",\"kind\":\"rps\",\"rep\":$rep,${j#\{}"
  done
done

RATE=$("$PY" - "$RESULTS" <<'EOF'
import json, sys
peaks = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("kind") == "rps":
        peaks[r["target"]] = max(peaks.get(r["target"], 0), r["rps"])
print(max(500, int(min(peaks.values()) * 0.5) // 500 * 500))
EOF
)
if [ "$HAVE_OHA" = 1 ]; then
  log "phase 2: latency over HTTPS at a fixed ${RATE} req/s (oha, open loop), ${LAT_DUR}s x ${LAT_REPEATS}"
  for ((rep = 0; rep < LAT_REPEATS; rep++)); do
    for t in $(order_for_rep "$rep"); do
      on_load_core oha --no-tui --output-format json -z "${LAT_DUR}s" -c "$CONNS" -q "$RATE" --latency-correction \
        --insecure -m POST -H 'Content-Type: application/json' -D "$WORK/small.json" \
        "https://127.0.0.1:$(port_of "$t" json)/v1/chat/completions" >"$WORK/oha-$t-$rep.json" 2>"$WORK/oha-$t-$rep.err" || true
      j=$("$PY" - "$WORK/oha-$t-$rep.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(json.dumps({"error": str(e)})); sys.exit()
lp = d.get("latencyPercentiles", {})
s = d.get("summary", {})
print(json.dumps({"p50_ms": (lp.get("p50") or 0) * 1e3, "p99_ms": (lp.get("p99") or 0) * 1e3,
                  "success": s.get("successRate"), "codes": d.get("statusCodeDistribution", {})}))
EOF
)
      log "  $t lat: $j"
      emit "{\"target\":\"$t\",\"kind\":\"lat\",\"rep\":$rep,${j#\{}"
    done
  done
else
  log "phase 2 skipped: oha not available"
fi

log "phase 3: SSE over HTTPS, ${SSE_STREAMS} streams x ${SSE_EVENTS} events unpaced, x ${LAT_REPEATS}"
for ((rep = 0; rep < LAT_REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do
    j=$(on_load_core "$PY" "$BENCH" sse --tls-ca "$CA" --port "$(port_of "$t" sse)" --model bench-sse \
          --streams "$SSE_STREAMS" --timeout 40)
    log "  $t sse: $j"
    emit "{\"target\":\"$t\",\"kind\":\"sse\",\"rep\":$rep,${j#\{}"
  done
done

# ------------------------------------------------------------------ report
DRIVER="n/a"
if has_target slotgate; then
  DRIVER=$("$PY" "$BENCH" probe --port "$P_SG_ADMIN" --path /readyz | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("driver","?"))')
fi
mkdir -p "$(dirname "$OUT")"
"$PY" - "$RESULTS" "$OUT" "$TARGETS" "$RATE" "$REPEATS" "$DRIVER" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$PROXY_CPU" "$LOAD_CPU" <<'EOF'
import datetime, json, math, sys
res, out, targets, rate, reps, driver, lb, la, pcpu, lcpu = sys.argv[1:11]
targets = targets.split(",")
rows = [json.loads(l) for l in open(res)]

def best(t, kind, key, agg):
    v = [r[key] for r in rows if r["target"] == t and r["kind"] == kind and isinstance(r.get(key), (int, float))
         and r.get(key) and not (kind == "rps" and (r.get("non2xx") or r.get("socket_errors")))]
    v = [x for x in v if not math.isnan(x)]
    return agg(v) if v else None

def fmt(v, d):
    return "–" if v is None else f"{v:,.{d}f}"

metrics = [
    ("small POST over HTTPS, max req/s (64 conns)", lambda t: best(t, "rps", "rps", max), 0),
    ("CPU µs/request (proxy process)", lambda t: best(t, "rps", "cpu_us_per_req", min), 1),
    ("req/s per core = 1e6 / CPU µs per request",
     lambda t: (lambda c: 1e6 / c if c else None)(best(t, "rps", "cpu_us_per_req", min)), 0),
    (f"latency p50 ms @ {int(rate):,} req/s", lambda t: best(t, "lat", "p50_ms", min), 3),
    (f"latency p99 ms @ {int(rate):,} req/s", lambda t: best(t, "lat", "p99_ms", min), 3),
    ("SSE events/s over HTTPS (200 streams × 500, unpaced)", lambda t: best(t, "sse", "events_per_s", max), 0),
    ("SSE TTFB p99 ms (unpaced)", lambda t: best(t, "sse", "ttfb_p99_ms", min), 2),
]
others = [t for t in targets if t != "slotgate"]
head = ["metric"] + targets + ([f"slotgate/{o}" for o in others] if "slotgate" in targets else [])
lines = [
    f"HTTPS on both sides (client → proxy TLS, proxy → upstream TLS); slotgate IO driver: **{driver}**; "
    f"{reps} repeat(s) (latency and SSE: up to 2), proxies on core {pcpu}, mocks + TLS front (HAProxy mode tcp) "
    f"+ load on core {lcpu}; ECDSA P-256 certificates, TLS 1.3; "
    f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; load average before/after: {lb} / {la}",
    "",
    "| " + " | ".join(head) + " |",
    "|" + "---|" * len(head),
]
for label, fn, d in metrics:
    vals = {t: fn(t) for t in targets}
    cells = [label] + [fmt(vals[t], d) for t in targets]
    if "slotgate" in targets:
        for o in others:
            a, b = vals["slotgate"], vals[o]
            cells.append(f"{a / b:.2f}×" if a and b else "–")
    lines.append("| " + " | ".join(cells) + " |")
lines += ["", "Ratios are slotgate ÷ other: above 1 is better for throughput rows, below 1 is better for "
          "latency and CPU rows. Each cell is the best of the repeats."]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
EOF
cp "$RESULTS" "${OUT%.md}.jsonl"
log "table written to $OUT (raw: ${OUT%.md}.jsonl)"
