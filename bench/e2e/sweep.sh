#!/usr/bin/env bash
# Measures slotgate tuning candidates with the end-to-end harness: one
# `run.sh --quick --targets slotgate,nginx` per candidate (nginx is the in-run reference that
# exposes machine noise), then one summary table of slotgate's figures per candidate.
#
#   bench/e2e/sweep.sh                 # every candidate below, ~2.5 minutes each
#   bench/e2e/sweep.sh epoll nodelay-off
#
# Output: bench/e2e/results/sweep.md (per-candidate tables in results/sweep-NAME.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RES="$HERE/results"
mkdir -p "$RES"
TMP="$(mktemp -d /tmp/slotgate-sweep.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT

declare -A CAND=(
  [baseline]=""
  [epoll]='driver = "epoll"'
  [io_uring]='driver = "io_uring"'
  [rbuf-4k]='read_buffer_bytes = 4096'
  [rbuf-64k]='read_buffer_bytes = 65536'
  [nodelay-off]='tcp_nodelay = false'
  [ring-256]='ring_entries = 256'
  [ring-4096]='ring_entries = 4096'
)
ORDER=(baseline epoll io_uring rbuf-4k rbuf-64k nodelay-off ring-256 ring-4096)
[ $# -gt 0 ] && ORDER=("$@")

(cd "$ROOT" && cargo build --release --quiet)
for name in "${ORDER[@]}"; do
  [ -n "${CAND[$name]+x}" ] || { echo "sweep.sh: unknown candidate $name" >&2; exit 2; }
  printf '[tuning]\n%s\n' "${CAND[$name]}" >"$TMP/$name.toml"
  echo "== $name: ${CAND[$name]:-(defaults)}" >&2
  "$HERE/run.sh" --quick --no-build --no-install --repeats "${SWEEP_REPEATS:-2}" --targets slotgate,nginx \
    --tuning "$TMP/$name.toml" --out "$RES/sweep-$name.md" >/dev/null
done

python3 - "$RES" "${ORDER[@]}" <<'EOF'
import json, os, sys
res, names = sys.argv[1], sys.argv[2:]
def best(rows, t, kind, key, hi):
    v = [r[key] for r in rows if r.get("target") == t and r.get("kind") == kind and r.get(key) is not None]
    return (max(v) if hi else min(v)) if v else None
cols = [("small req/s", "rps", "rps", True), ("CPU µs/req", "rps", "cpu_us_per_req", False),
        ("64 KiB req/s", "big", "rps", True), ("p99 ms @fixed", "lat", "p99_ms", False),
        ("SSE events/s", "sse", "events_per_s", True), ("paced gap p99 ms", "paced", "gap_p99_ms", False),
        ("RSS 1k idle MiB", "hold", "rss_kib", False), ("RSS 1k streams MiB", "hold_streams", "rss_kib", False)]
out = ["| candidate | driver | " + " | ".join(c[0] for c in cols) + " | nginx small req/s (reference) | small req/s ÷ nginx | CPU/req ÷ nginx |",
       "|---|---|" + "---|" * (len(cols) + 3)]
for n in names:
    p = os.path.join(res, f"sweep-{n}.jsonl")
    if not os.path.exists(p):
        continue
    rows = [json.loads(l) for l in open(p)]
    meta = next((r for r in rows if r.get("kind") == "meta"), {})
    cells = []
    for _, kind, key, hi in cols:
        v = best(rows, "slotgate", kind, key, hi)
        if v is not None and key == "rss_kib":
            v = v / 1024
        cells.append("–" if v is None else (f"{v:,.1f}" if isinstance(v, float) and v < 100 else f"{v:,.0f}"))
    ref = best(rows, "nginx", "rps", "rps", True)
    sg = best(rows, "slotgate", "rps", "rps", True)
    sc, nc = best(rows, "slotgate", "rps", "cpu_us_per_req", False), best(rows, "nginx", "rps", "cpu_us_per_req", False)
    refs = f"{ref:,.0f}" if ref else "–"
    r1 = f"{sg / ref:.2f}×" if sg and ref else "–"
    r2 = f"{sc / nc:.2f}×" if sc and nc else "–"
    out.append(f"| {n} | {meta.get('driver', '?')} | " + " | ".join(cells) + f" | {refs} | {r1} | {r2} |")
text = "\n".join(out) + "\n"
print(text)
open(os.path.join(res, "sweep.md"), "w").write(text)
EOF
