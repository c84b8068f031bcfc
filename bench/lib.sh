# Scaffolding shared by the A/B micro-benchmarks in bench/ (access_log.sh, admission.sh); sourced,
# never run. Both put the release binary in front of one `slotgate mock-backend` serving model
# "m1" and alternate wrk runs between two configurations.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release/slotgate}
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT

bench_params() { # default-seconds default-mock-port default-port [seconds [rounds]]: SECS ROUNDS MOCK_PORT PORT
  SECS=${4:-$1}
  ROUNDS=${5:-3}
  MOCK_PORT=${MOCK_PORT:-$2}
  PORT=${PORT:-$3}
}

start_mock() { # port [global slotgate flags...]: the mock model server, in the background
  local port=$1; shift
  "$BIN" "$@" mock-backend --port "$port" --model m1 --tokens 16 >/dev/null 2>&1 &
}

write_config() { # file port mock-port cores [extra upstream lines]: slotgate with one remote upstream
  cat >"$1" <<TOML
[listen]
addr = "127.0.0.1:$2"
admin = ""
[[upstream]]
name = "mock"
kind = "remote"
url = "http://127.0.0.1:$3/v1"
models = ["m1"]
${5-}
[tuning]
cores = $4
TOML
}

write_post_lua() { # file body: a wrk script that POSTs the body as JSON
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Content-Type"] = "application/json"
LUA
}

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# One measured run: binary [VAR=value...] serves $DIR/slotgate.toml on $PORT (JSON log to
# $DIR/log.json), wrk posts $DIR/post.lua with $CONNS connections for $SECS s after a 1 s
# warm-up; prints "req/s cpu-us-per-request" (slotgate's own utime + stime over the run: robust
# when the machine is shared, unlike req/s). $PIN_PROXY / $PIN_LOAD (e.g. "taskset -c 0") pin.
measured_run() {
  local bin=$1; shift
  env "$@" ${PIN_PROXY:-} "$bin" --log-format json serve --config "$DIR/slotgate.toml" 2>>"$DIR/log.json" &
  local pid=$!
  wait_port "$PORT"
  ${PIN_LOAD:-} wrk -t1 -c"$CONNS" -d1s -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  local t0; t0=$(cpu_ticks "$pid")
  ${PIN_LOAD:-} wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$DIR/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$DIR/wrk.txt"
  local t1; t1=$(cpu_ticks "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  local rps n
  rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk.txt")
  n=$(awk '/requests in/ {print $1}' "$DIR/wrk.txt")
  echo "$rps $(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l | cut -c1-6)"
}
