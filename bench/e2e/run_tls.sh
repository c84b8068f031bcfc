#!/usr/bin/env bash
# End-to-end benchmark over HTTPS: slotgate vs nginx vs HAProxy, each terminating TLS
# from the client AND originating TLS to the upstream, measured in one run, loopback only.
#
#   bench/e2e/run_tls.sh            # ~3 minutes
#   bench/e2e/run_tls.sh --quick    # ~1.5 minutes, shorter loads, fewer repeats
#
# Options: --targets slotgate,nginx,haproxy  --repeats N  --out FILE  --no-build  --keep
#          --budget PCT (proxy-bound phase: the proxy's CPU quota, % of one core; default 30)
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
# Not run in CI. See bench/e2e/README.md.
set -euo pipefail

NAME=run_tls.sh
LOG_TAG=e2e-tls
TARGETS="slotgate,nginx,haproxy"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
OUT="$HERE/results/tls-latest.md"
while [ $# -gt 0 ]; do common_option "$@"; shift "$OPT_ARGS"; done
if [ "$QUICK" = 1 ]; then
  WARM=1; DUR=4; LAT_DUR=4; REPEATS="${REPEATS:-1}"
else
  WARM=2; DUR=5; LAT_DUR=5; REPEATS="${REPEATS:-3}"
fi
LAT_REPEATS=$((REPEATS < 2 ? REPEATS : 2))

B="${E2E_PORT_BASE:-18000}"
P_MOCK_JSON=$((B + 601)); P_MOCK_SSE=$((B + 602))
P_FRONT_JSON=$((B + 611)); P_FRONT_SSE=$((B + 612))
P_SG=$((B + 620)); P_SG_ADMIN=$((B + 621))
P_NG=$((B + 630)); P_HP=$((B + 640))

pin_cores 0
ensure_tools openssl
build_slotgate
make_work_dir slotgate-e2e-tls
check_ports_free "$P_MOCK_JSON" "$P_MOCK_SSE" "$P_FRONT_JSON" "$P_FRONT_SSE" "$P_SG" "$P_SG_ADMIN" \
  $((P_NG + 1)) $((P_NG + 2)) $((P_HP + 1)) $((P_HP + 2))

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
start_server "$WORK/mock-json.log" "$LOAD_CPU" "$SG_BIN" --log-level warn mock-backend --port "$P_MOCK_JSON" \
  --model bench --tokens 16 --response-bytes 1024
start_server "$WORK/mock-sse.log" "$LOAD_CPU" "$SG_BIN" --log-level warn mock-backend --port "$P_MOCK_SSE" \
  --model bench-sse --tokens "$SSE_EVENTS" --tokens-per-sec 0
{ haproxy_head tcp; cat <<EOF
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
} >"$WORK/front.cfg"
start_haproxy front "$LOAD_CPU"
for p in "$P_MOCK_JSON" "$P_MOCK_SSE"; do "$PY" "$BENCH" probe --port "$p" --path /health >/dev/null; done
for p in "$P_FRONT_JSON" "$P_FRONT_SSE"; do "$PY" "$BENCH" probe --tls-ca "$CA" --port "$p" --path /health >/dev/null; done

# ------------------------------------------------------------------ proxies under test (core 0)
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
  start_server "$WORK/slotgate.log" "$PROXY_CPU" "$SG_BIN" --log-level warn serve --config "$WORK/slotgate.toml"
  PID_OF[slotgate]=$SERVER_PID
fi
if has_target nginx; then
  # proxy_ssl_name: nginx checks DNS names only, so it verifies "localhost" (also in the SAN).
  start_nginx <<EOF
  ssl_certificate $PKI/cert.pem;
  ssl_certificate_key $PKI/key.pem;
  ssl_session_cache shared:SSL:1m;
  # Debian's nginx 1.22 stops at TLS 1.2 on both sides unless told: the comparison is TLS 1.3.
  ssl_protocols TLSv1.2 TLSv1.3;
  proxy_ssl_protocols TLSv1.2 TLSv1.3;
  upstream json { server 127.0.0.1:$P_FRONT_JSON; keepalive 64; keepalive_requests 1000000; }
  upstream sse  { server 127.0.0.1:$P_FRONT_SSE;  keepalive 64; keepalive_requests 1000000; }
  proxy_ssl_trusted_certificate $CA;
  proxy_ssl_verify on;
  proxy_ssl_name localhost;
  proxy_ssl_server_name on;
  proxy_ssl_session_reuse on;
  server { listen 127.0.0.1:$((P_NG + 1)) ssl backlog=4096; location / { proxy_pass https://json; } }
  server { listen 127.0.0.1:$((P_NG + 2)) ssl backlog=4096; location / { proxy_pass https://sse; } }
EOF
fi
if has_target haproxy; then
  { haproxy_head http; cat <<EOF
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
  } >"$WORK/haproxy.cfg"
  start_haproxy haproxy "$PROXY_CPU"
  PID_OF[haproxy]=$SERVER_PID
fi

port_of() { # target workload(json|sse)
  local off; case "$2" in json) off=1 ;; sse) off=2 ;; esac
  case "$1" in slotgate) echo "$P_SG" ;; nginx) echo $((P_NG + off)) ;; haproxy) echo $((P_HP + off)) ;; esac
}
TLS_CA="$CA"
IFS=',' read -r -a TLIST <<<"$TARGETS"
wait_ready json sse

log "phase 1: small POST over HTTPS, closed loop, ${CONNS} conns, ${DUR}s x ${REPEATS}"
wrk_phase rps "$WORK/small.json" "$WARM" "$DUR"

RATE=$(fixed_rate)
latency_phase "phase 2" "latency over HTTPS at a fixed ${RATE} req/s (oha, open loop), ${LAT_DUR}s x ${LAT_REPEATS}" \
  "$RATE" "$LAT_REPEATS" "$LAT_DUR"

log "phase 3: SSE over HTTPS, ${SSE_STREAMS} streams x ${SSE_EVENTS} events unpaced, x ${LAT_REPEATS}"
for ((rep = 0; rep < LAT_REPEATS; rep++)); do
  for t in $(order_for_rep "$rep"); do sse_run "$rep" "$t" sse sse 40; done
done

# A new TLS connection for every request (the client sends `Connection: close`): the cost of a
# front-door handshake (TLS 1.3, x25519; clients resume with a session ticket where they can).
HS_CONNS=16
log "phase 3b: new HTTPS connection per request (Connection: close), ${HS_CONNS} conns, ${DUR}s x ${REPEATS}"
SAVED_CONNS=$CONNS; CONNS=$HS_CONNS; WRK_EXTRA=(-H "Connection: close")
wrk_phase handshake "$WORK/small.json" "$WARM" "$DUR"
CONNS=$SAVED_CONNS; WRK_EXTRA=()

# What each front door negotiated with an OpenSSL client (the table states it).
PROTOS=""
for t in "${TLIST[@]}"; do
  p=$(echo | openssl s_client -connect "127.0.0.1:$(port_of "$t" json)" -CAfile "$CA" 2>/dev/null \
      | sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)$/\1 \2/p' | head -1)
  PROTOS="$PROTOS${PROTOS:+; }$t: ${p:-?}"
done
log "negotiated: $PROTOS"

# The max req/s of phase 1 mostly measures the load side (core 1, with the TLS front, saturates
# first); held to a CPU quota, the proxy is what saturates. See bench/e2e/README.md.
log "phase 4: small POST over HTTPS with each proxy held to ${BUDGET_PCT}% of a core (cgroup cpu quota), ${CONNS} conns, ${DUR}s x ${REPEATS}"
budget_phase "$WORK/small.json" "$WARM" "$DUR"

# ------------------------------------------------------------------ report
DRIVER="n/a"
if has_target slotgate; then DRIVER=$(slotgate_driver "$P_SG_ADMIN"); fi
mkdir -p "$(dirname "$OUT")"
"$PY" - "$RESULTS" "$OUT" "$TARGETS" "$RATE" "$REPEATS" "$DRIVER" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$PROXY_CPU" "$LOAD_CPU" "$BUDGET_PCT" "$BUDGET_SKIPPED" "$PROTOS" <<'EOF'
import datetime, json, math, sys
res, out, targets, rate, reps, driver, lb, la, pcpu, lcpu, budget, skipped, protos = sys.argv[1:14]
targets = targets.split(",")
rows = [json.loads(l) for l in open(res)]

def best(t, kind, key, agg):
    v = [r[key] for r in rows if r["target"] == t and r["kind"] == kind and isinstance(r.get(key), (int, float))
         and r.get(key) and not (kind in ("rps", "capped", "handshake") and (r.get("non2xx") or r.get("socket_errors")))]
    v = [x for x in v if not math.isnan(x)]
    return agg(v) if v else None

def fmt(v, d):
    return "–" if v is None else f"{v:,.{d}f}"

metrics = [
    ("small POST over HTTPS, max req/s (64 conns)", lambda t: best(t, "rps", "rps", max), 0),
    ("CPU µs/request (proxy process)", lambda t: best(t, "rps", "cpu_us_per_req", min), 1),
    ("req/s per core = 1e6 / CPU µs per request",
     lambda t: (lambda c: 1e6 / c if c else None)(best(t, "rps", "cpu_us_per_req", min)), 0),
    (f"max req/s with the proxy held to {budget}% of a core (cgroup quota)", lambda t: best(t, "capped", "rps", max), 0),
    ("new connection per request (TLS handshake), req/s (16 conns)", lambda t: best(t, "handshake", "rps", max), 0),
    ("CPU µs per new connection (proxy process)", lambda t: best(t, "handshake", "cpu_us_per_req", min), 1),
    (f"latency p50 ms @ {int(rate):,} req/s", lambda t: best(t, "lat", "p50_ms", min), 3),
    (f"latency p99 ms @ {int(rate):,} req/s", lambda t: best(t, "lat", "p99_ms", min), 3),
    ("SSE events/s over HTTPS (200 streams × 500, unpaced)", lambda t: best(t, "sse", "events_per_s", max), 0),
    ("SSE: proxy CPU µs per relayed event", lambda t: best(t, "sse", "cpu_us_per_event", min), 2),
    ("SSE TTFB p99 ms (unpaced)", lambda t: best(t, "sse", "ttfb_p99_ms", min), 2),
]
others = [t for t in targets if t != "slotgate"]
head = ["metric"] + targets + ([f"slotgate/{o}" for o in others] if "slotgate" in targets else [])
lines = [
    f"HTTPS on both sides (client → proxy TLS, proxy → upstream TLS); slotgate IO driver: **{driver}**; "
    f"{reps} repeat(s) (latency and SSE: up to 2), proxies on core {pcpu}, mocks + TLS front (HAProxy mode tcp) "
    f"+ load on core {lcpu}; ECDSA P-256 certificates; negotiated with an OpenSSL client: {protos}; "
    f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; load average before/after: {lb} / {la}",
    "",
    "| " + " | ".join(head) + " |",
    "|" + "---|" * len(head),
]
for label, fn, d in metrics:
    vals = {t: fn(t) for t in targets}
    if "cgroup quota" in label and all(v is None for v in vals.values()):
        continue
    cells = [label] + [fmt(vals[t], d) for t in targets]
    if "slotgate" in targets:
        for o in others:
            a, b = vals["slotgate"], vals[o]
            cells.append(f"{a / b:.2f}×" if a and b else "–")
    lines.append("| " + " | ".join(cells) + " |")
lines += ["", "Ratios are slotgate ÷ other: above 1 is better for throughput rows, below 1 is better for "
          "latency and CPU rows. Each cell is the best of the repeats."]
if skipped:
    lines += ["", f"No row for the proxy held to {budget}% of a core: {skipped}."]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
EOF
cp "$RESULTS" "${OUT%.md}.jsonl"
log "table written to $OUT (raw: ${OUT%.md}.jsonl)"
