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
