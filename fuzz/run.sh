#!/bin/sh
# Runs every fuzz target for <minutes> each, one after the other, at low priority on one core.
# Usage: fuzz/run.sh <minutes> [target...]
# Seeds live in fuzz/corpus/<target>/ (committed); new inputs go to fuzz/work/<target>/ (ignored).
# Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable).
set -eu
cd "$(dirname "$0")"
mins=${1:?usage: run.sh <minutes> [target...]}
shift
targets=${*:-"front_door admin_api request_head response_head facts_remap config_parse"}
tc=""
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then tc="+nightly"; else export RUSTC_BOOTSTRAP=1; fi
for t in $targets; do
  mkdir -p "work/$t"
  echo "== $t: $mins min" >&2
  nice -n 10 cargo $tc fuzz run "$t" "work/$t" "corpus/$t" -- \
    -max_total_time=$((mins * 60)) -max_len=8192 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    2>&1 | tee "work/$t.log" | grep -E '^(#[0-9]+ +DONE|stat::|==[0-9]+==|SUMMARY|Done)' || true
done
