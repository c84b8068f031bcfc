#!/usr/bin/env python3
"""Helpers of the end-to-end harness (bench/e2e/run.sh); Python 3.11 stdlib only.

Subcommands:
  body      write a chat-completions request body of a given size ("model" last)
  proc      CPU time (ns, every live thread's schedstat) and RSS (KiB) of a process and its descendants
  tree      a process and its descendants, one pid a line (what the CPU budget phase moves)
  sse       N concurrent SSE streams: events/s, time to first byte, inter-event gaps
  hold      open N keep-alive connections (one request each) or N streams, hold them, and
            report the RSS of the given processes while they are open
  ratesearch  the highest open-loop rate (oha) at which p99 stays under each bound
  report    turn the run's results.jsonl into the Markdown table

Every network call goes to 127.0.0.1 and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

HOST = "127.0.0.1"
# TLS client context (sse, hold and probe with --tls-ca CA.pem): None = plain HTTP.
SSL_CTX = None


# ---------------------------------------------------------------- request bodies


def make_body(size: int, model: str, stream: bool, max_tokens: int | None) -> bytes:
    """A chat-completions JSON body of about `size` bytes with "model" as the last key."""
    tail = ""
    if max_tokens is not None:
        tail += f',"max_tokens":{max_tokens}'
    if stream:
        tail += ',"stream":true'
    tail += f',"model":"{model}"}}'
    head = '{"messages":[{"role":"system","content":"You are a benchmark."},{"role":"user","content":"'
    mid = '"}]'
    pad = max(0, size - len(head) - len(mid) - len(tail))
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit " * (pad // 40 + 2))[:pad]
    return (head + words + mid + tail).encode()


def cmd_body(a: argparse.Namespace) -> None:
    data = make_body(a.size, a.model, a.stream, a.max_tokens)
    json.loads(data)  # must be valid JSON
    with open(a.out, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- /proc accounting


def tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx master + worker, and so on)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ns(pids: list[int]) -> int:
    """CPU time of the process trees, in ns: the sum of every live thread's on-CPU time
    (`/proc/P/task/T/schedstat`), which has nanosecond resolution where `/proc/P/stat`'s
    utime/stime tick every 10 ms (too coarse for a 0.1 s SSE burst)."""
    total = 0
    for root in pids:
        for p in tree(root):
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except OSError:
                continue
            for t in tids:
                try:
                    with open(f"/proc/{p}/task/{t}/schedstat") as f:
                        total += int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
    return total


def rss_kib(pids: list[int]) -> int:
    total = 0
    for root in pids:
        for p in tree(root):
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                continue
    return total


def cmd_tree(a: argparse.Namespace) -> None:
    print("\n".join(str(p) for p in tree(a.pid)))


def cmd_proc(a: argparse.Namespace) -> None:
    pids = [int(p) for p in a.pids.split(",") if p]
    print(json.dumps({"cpu_ns": cpu_ns(pids), "rss_kib": rss_kib(pids)}))


# ---------------------------------------------------------------- SSE client


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i]


def request_bytes(port: int, body: bytes) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def one_stream(port: int, req: bytes, deadline: float, gaps: list[float], read_all: bool = True):
    """One SSE exchange; returns (ttfb_s, events, ok). Gaps between event arrivals go to `gaps`."""
    reader, writer = await asyncio.open_connection(HOST, port, ssl=SSL_CTX)
    try:
        t0 = time.perf_counter()
        writer.write(req)
        await writer.drain()
        first = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
        t_first = time.perf_counter()
        if not first:
            return None, 0, False
        buf = first
        hdr_end = buf.find(b"\r\n\r\n")
        while hdr_end < 0:
            more = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
            if not more:
                return None, 0, False
            buf += more
            hdr_end = buf.find(b"\r\n\r\n")
        if not buf.startswith(b"HTTP/1.1 200"):
            return None, 0, False
        body = buf[hdr_end + 4 :]
        events = 0
        last = t_first
        done = False
        tail = b""
        chunk_t = t_first
        while True:
            if body:
                data = tail + body
                n = data.count(b"data: ")
                if n:
                    # The first event of a read arrived `chunk_t - last` after the previous one;
                    # events that arrive together have a zero gap.
                    if events > 0:
                        gaps.append(chunk_t - last)
                        gaps.extend([0.0] * (n - 1))
                    else:
                        gaps.extend([0.0] * (n - 1))
                    events += n
                    last = chunk_t
                if b"[DONE]" in data:
                    done = True
                    break
                tail = data[-16:]
                # Don't count a "data: " split across reads twice: keep only bytes after the
                # last complete marker.
                k = tail.rfind(b"data: ")
                if k >= 0:
                    tail = tail[k + 6 :]
            if not read_all and events > 0:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            body = await asyncio.wait_for(reader.read(65536), remaining)
            chunk_t = time.perf_counter()
            if not body:
                break
        return t_first - t0, events - (1 if done else 0), done
    finally:
        writer.close()


async def run_sse(port: int, n: int, body: bytes, timeout: float) -> dict:
    req = request_bytes(port, body)
    deadline = time.monotonic() + timeout
    gaps: list[float] = []
    t0 = time.perf_counter()
    res = await asyncio.gather(
        *(one_stream(port, req, deadline, gaps) for _ in range(n)), return_exceptions=True
    )
    wall = time.perf_counter() - t0
    ok = [r for r in res if isinstance(r, tuple) and r[2]]
    ttfb = [r[0] for r in ok]
    events = sum(r[1] for r in ok)
    nonzero = [g for g in gaps if g > 0]
    return {
        "streams": n,
        "streams_ok": len(ok),
        "events": events,
        "wall_s": wall,
        "events_per_s": events / wall if wall > 0 else 0.0,
        "ttfb_p50_ms": pct(ttfb, 50) * 1e3 if ttfb else None,
        "ttfb_p99_ms": pct(ttfb, 99) * 1e3 if ttfb else None,
        "gap_p50_ms": pct(gaps, 50) * 1e3 if gaps else None,
        "gap_p99_ms": pct(gaps, 99) * 1e3 if gaps else None,
        "gap_p999_ms": pct(gaps, 99.9) * 1e3 if gaps else None,
        "gap_nonzero_share": len(nonzero) / len(gaps) if gaps else None,
    }


def cmd_sse(a: argparse.Namespace) -> None:
    body = make_body(300, a.model, True, a.max_tokens)
    out = asyncio.run(run_sse(a.port, a.streams, body, a.timeout))
    print(json.dumps(out))


# ---------------------------------------------------------------- many open connections


async def hold_one(port: int, req: bytes, stream: bool, ready: asyncio.Event, release: asyncio.Event, deadline: float):
    reader, writer = await asyncio.open_connection(HOST, port, ssl=SSL_CTX)
    try:
        writer.write(req)
        await writer.drain()
        if stream:
            first = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
            ok = first.startswith(b"HTTP/1.1 200")
            ready.set()
            # Keep reading (the proxy relays events) until released or the deadline.
            while not release.is_set() and time.monotonic() < deadline:
                try:
                    d = await asyncio.wait_for(reader.read(65536), 0.5)
                except asyncio.TimeoutError:
                    continue
                if not d:
                    break
            return ok
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), max(0.1, deadline - time.monotonic()))
        ok = head.startswith(b"HTTP/1.1 200")
        clen = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                clen = int(line.split(b":", 1)[1])
        await asyncio.wait_for(reader.readexactly(clen), max(0.1, deadline - time.monotonic()))
        # Idle keep-alive: hold the connection open until released.
        await asyncio.wait_for(release.wait(), max(0.1, deadline - time.monotonic()))
        return ok
    finally:
        writer.close()


async def run_hold(a: argparse.Namespace) -> dict:
    pids = [int(p) for p in a.pids.split(",") if p]
    if a.stream:
        body = make_body(300, a.model, True, a.max_tokens)
    else:
        body = make_body(1024, a.model, False, 16)
    req = request_bytes(a.port, body)
    deadline = time.monotonic() + a.timeout
    release = asyncio.Event()
    ready = asyncio.Event()
    before = rss_kib(pids)
    tasks = []
    for _ in range(a.n):
        tasks.append(asyncio.create_task(hold_one(a.port, req, a.stream, ready, release, deadline)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(a.settle)
    during = rss_kib(pids)
    release.set()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for r in res if r is True)
    return {"n": a.n, "ok": ok, "rss_before_kib": before, "rss_kib": during}


def cmd_hold(a: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(run_hold(a))))


# ---------------------------------------------------------------- readiness


def cmd_probe(a: argparse.Namespace) -> None:
    """Wait until POST (or GET) on 127.0.0.1:port answers 200; print the body. Exit 1 at the deadline."""
    import http.client

    body = make_body(300, a.model, False, 4) if a.model else None
    deadline = time.monotonic() + a.deadline
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            if SSL_CTX is not None:
                c = http.client.HTTPSConnection(HOST, a.port, timeout=2, context=SSL_CTX)
            else:
                c = http.client.HTTPConnection(HOST, a.port, timeout=2)
            if body is None:
                c.request("GET", a.path)
            else:
                c.request("POST", a.path, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status == 200:
                sys.stdout.write(data.decode(errors="replace"))
                return
            last = f"{r.status} {data[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    sys.stderr.write(f"probe 127.0.0.1:{a.port}{a.path}: not ready: {last}\n")
    sys.exit(1)


# ---------------------------------------------------------------- highest rate under a p99 bound


def oha_step(a: argparse.Namespace, rate: int) -> dict:
    """One open-loop step: `oha -q RATE --latency-correction` for a.step_s seconds."""
    import subprocess

    cmd = ["oha", "--no-tui", "--output-format", "json", "-z", f"{a.step_s}s", "-c", str(a.conns),
           "-q", str(rate), "--latency-correction", "-m", "POST", "-H", "Content-Type: application/json",
           "-D", a.body]
    if a.insecure:
        cmd.append("--insecure")
    cmd.append(a.url)
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=a.step_s + 30).stdout
        d = json.loads(out)
    except (subprocess.TimeoutExpired, ValueError) as e:
        return {"rate": rate, "error": str(e)[:200], "ok": {}}
    lp, s = d.get("latencyPercentiles", {}), d.get("summary", {})
    codes = d.get("statusCodeDistribution", {})
    n = sum(codes.values()) if codes else 0
    good = codes.get("200", 0)
    p99 = (lp.get("p99") or float("inf")) * 1e3
    achieved = s.get("requestsPerSec") or 0.0
    r = {"rate": rate, "p50_ms": (lp.get("p50") or 0) * 1e3, "p99_ms": p99, "achieved_rps": achieved,
         "responses": n, "non200": n - good, "success": s.get("successRate")}
    # Held: every answer a 200, every connection attempt succeeded, the offered rate reached
    # (within 10%: oha's rate counts the drain at the end of the window too).
    held = n > 0 and good == n and (s.get("successRate") or 0) >= 0.999 and achieved >= 0.9 * rate
    r["held"] = held
    r["ok"] = {str(b): bool(held and p99 < b) for b in a.bounds}
    return r


def cmd_ratesearch(a: argparse.Namespace) -> None:
    """The highest offered rate (open loop, CO-corrected) at which p99 stays under each bound:
    doubling from --start until the largest bound fails (halving first if --start already fails
    the smallest), then --bisect geometric bisections of each bound's bracket. Every step is
    --step-s seconds; the number of steps is bounded (doubling stops at --max, halving at --min)."""
    a.bounds = sorted(float(b) for b in a.bounds.split(","))
    steps: dict[int, dict] = {}
    t0 = time.monotonic()

    def step(rate: int) -> dict:
        rate = max(1, int(rate))
        if rate not in steps:
            # A step that misses the largest bound is tried again (--retries) and the better
            # try kept: on a shared machine noise only ever raises p99.
            for attempt in range(1 + a.retries):
                r = oha_step(a, rate)
                r["tries"] = attempt + 1
                if rate not in steps or r.get("p99_ms", float("inf")) < steps[rate].get("p99_ms", float("inf")):
                    steps[rate] = r
                sys.stderr.write(f"  ratesearch {a.url} {rate}/s: p99 {r.get('p99_ms', float('nan')):.3f} ms, "
                                 f"{r.get('achieved_rps', 0):.0f}/s achieved, held={r.get('held')}\n")
                time.sleep(a.pause_s)
                if steps[rate]["ok"].get(str(a.bounds[-1])) and steps[rate]["ok"].get(str(a.bounds[0])):
                    break
                if not r.get("held"):
                    break  # not a p99 spike: the rate itself was not reached
        return steps[rate]

    def ok(rate: int, b: float) -> bool:
        return step(rate)["ok"].get(str(b), False)

    lo_b, hi_b = a.bounds[0], a.bounds[-1]
    r = a.start
    # Below the start: halve until the smallest bound holds (at most 4 times, not below --min).
    for _ in range(4):
        if ok(r, lo_b) or r <= a.min:
            break
        r = max(a.min, r // 2)
    ok(r, lo_b)  # the last halving is measured too
    r = a.start
    while ok(r, hi_b) and r * 2 <= a.max:
        r *= 2
    if ok(r, hi_b) and r < a.max:
        ok(a.max, hi_b)  # doubling stopped short of --max: try --max itself
    out = {"step_s": a.step_s, "conns": a.conns, "retries": a.retries, "bounds": {}}
    for b in a.bounds:
        passing = sorted(x for x, s in steps.items() if s["ok"].get(str(b)))
        failing = sorted(x for x, s in steps.items() if not s["ok"].get(str(b)))
        if not passing:
            low = min(steps)
            out["bounds"][str(b)] = {"rate": 0, "below": low, "p99_ms_at_below": steps[low].get("p99_ms")}
            continue
        lo = passing[-1]
        above = [x for x in failing if x > lo]
        hi = above[0] if above else None
        for _ in range(a.bisect if hi else 0):
            mid = int(round((lo * hi) ** 0.5))
            if mid <= lo or mid >= hi:
                break
            if ok(mid, b):
                lo = mid
            else:
                hi = mid
        out["bounds"][str(b)] = {"rate": lo, "p99_ms": steps[lo]["p99_ms"], "first_failing": hi,
                                 "at_max": hi is None}
    out["steps"] = [steps[k] for k in sorted(steps)]
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out))


# ---------------------------------------------------------------- report


HIGHER_IS_BETTER = {"rps", "events_per_s"}
TARGETS = ["direct", "slotgate", "nginx", "haproxy", "haproxy-body", "litellm"]


def fmt(v, digits=0, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v != v:
        return "–"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.2f}×" if abs(r) >= 0.01 else f"{r:.2g}×"


def cmd_report(a: argparse.Namespace) -> None:
    rows: dict[tuple[str, str], list[dict]] = {}
    meta = {}
    with open(a.results) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "meta":
                meta.update(r)
                continue
            rows.setdefault((r["target"], r["kind"]), []).append(r)

    def best(target, kind, key, agg=max):
        vals = [r[key] for r in rows.get((target, kind), []) if r.get(key) is not None]
        return agg(vals) if vals else None

    def med(target, kind, key):
        """Best of the repeats: noise on a shared machine only ever lowers throughput and
        raises latency, CPU and memory, so the best repeat is the least disturbed one."""
        vals = [r[key] for r in rows.get((target, kind), []) if r.get(key) is not None]
        if not vals:
            return None
        return max(vals) if key in HIGHER_IS_BETTER else min(vals)

    targets = [t for t in TARGETS if any(k[0] == t for k in rows)]
    metrics = []  # (label, key fn, higher_is_better, digits)

    def m(label, fn, higher, digits=0, added=False, kind=None, cell=None):
        metrics.append((label, fn, higher, digits, added, kind, cell))

    def skipped(target, kind):
        """Why `kind` was not measured for `target` (a row with "skipped"), or None."""
        why = [r["skipped"] for r in rows.get((target, kind), []) if r.get("skipped")]
        return why[0] if why else None

    m("small POST, max req/s (64 conns)", lambda t: med(t, "rps", "rps"), True, kind="rps")
    m("CPU µs/request (proxy process)", lambda t: med(t, "rps", "cpu_us_per_req"), False, 1, kind="rps")
    m("req/s per core = 1e6 / CPU µs per request", lambda t: per_core(med(t, "rps", "cpu_us_per_req")), True, kind="rps")
    budget = meta.get("budget_pct") or best_any(rows, "capped", "budget_pct")
    m(capped_label(budget), lambda t: med(t, "capped", "rps"), True, kind="capped")
    m("64 KiB POST, req/s (64 conns)", lambda t: med(t, "big", "rps"), True, kind="big")
    m(f"latency p50 ms @ {fmt(meta.get('fixed_rate'))} req/s", lambda t: med(t, "lat", "p50_ms"), False, 3, kind="lat")
    m(f"latency p99 ms @ {fmt(meta.get('fixed_rate'))} req/s", lambda t: med(t, "lat", "p99_ms"), False, 3, kind="lat")
    m("added p50 ms vs direct", lambda t: sub(med(t, "lat", "p50_ms"), med("direct", "lat", "p50_ms")), False, 3, True, kind="lat")
    m("added p99 ms vs direct", lambda t: sub(med(t, "lat", "p99_ms"), med("direct", "lat", "p99_ms")), False, 3, True, kind="lat")
    for b in ("1.0", "5.0"):
        m(f"highest req/s with p99 < {float(b):g} ms (open loop, oha, CO-corrected)",
          lambda t, b=b: slo_rate(rows, t, b), True, kind="slo", cell=lambda t, b=b: slo_cell(rows, t, b))
    for c in (1, 4):
        k = f"seq{c}"
        m(f"concurrency {c}: p50 ms (wrk, closed loop)", lambda t, k=k: med(t, k, "p50_ms"), False, 3, kind=k)
        m(f"concurrency {c}: p99 ms", lambda t, k=k: med(t, k, "p99_ms"), False, 3, kind=k)
        m(f"concurrency {c}: added p50 ms vs direct", lambda t, k=k: sub(med(t, k, "p50_ms"), med("direct", k, "p50_ms")), False, 3, True, kind=k)
        m(f"concurrency {c}: added p99 ms vs direct", lambda t, k=k: sub(med(t, k, "p99_ms"), med("direct", k, "p99_ms")), False, 3, True, kind=k)
    m("SSE events/s (200 streams × 500, unpaced)", lambda t: med(t, "sse", "events_per_s"), True, kind="sse")
    m("SSE: proxy CPU µs per relayed event (unpaced)", lambda t: med(t, "sse", "cpu_us_per_event"), False, 2, kind="sse")
    m("SSE TTFB p99 ms (unpaced)", lambda t: med(t, "sse", "ttfb_p99_ms"), False, 2, kind="sse")
    m("SSE paced: TTFB p50 ms", lambda t: med(t, "paced", "ttfb_p50_ms"), False, 3, kind="paced")
    m("SSE paced: added TTFB p50 ms vs direct", lambda t: sub(med(t, "paced", "ttfb_p50_ms"), med("direct", "paced", "ttfb_p50_ms")), False, 3, True, kind="paced")
    m("SSE paced: inter-event p99 ms", lambda t: med(t, "paced", "gap_p99_ms"), False, 3, kind="paced")
    m("SSE paced: added inter-event p99 ms vs direct", lambda t: sub(med(t, "paced", "gap_p99_ms"), med("direct", "paced", "gap_p99_ms")), False, 3, True, kind="paced")
    m("RSS idle MiB", lambda t: kib_mib(best(t, "rss_idle", "rss_kib", min)), False, 1, kind="rss_idle")
    m("RSS, 1,000 idle keep-alive conns, MiB", lambda t: kib_mib(best(t, "hold", "rss_kib", min)), False, 1, kind="hold")
    m("RSS, 1,000 open SSE streams, MiB", lambda t: kib_mib(best(t, "hold_streams", "rss_kib", min)), False, 1, kind="hold_streams")

    out = []
    out.extend(header_lines(meta))
    out.append("")
    others = [t for t in targets if t != "slotgate"]
    hdr = "| metric | " + " | ".join(targets) + " | " + " | ".join(f"slotgate/{o}" for o in others) + " |"
    out.append(hdr)
    out.append("|" + "---|" * (len(targets) + len(others) + 1))
    skip_notes: dict[str, str] = {}
    for label, fn, higher, digits, added, kind, cell in metrics:
        vals = {t: fn(t) for t in targets}
        why = {t: skipped(t, kind) for t in targets} if kind else {}
        shown = any(v is not None for v in vals.values()) or (cell and any(cell(t) for t in targets))
        if not shown and not any(why.values()):
            continue
        cells = []
        for t in targets:
            v = vals[t]
            if added and t == "direct":
                cells.append("–")
            elif v is None and why.get(t):
                if why[t] not in skip_notes:
                    skip_notes[why[t]] = f"skipped ({len(skip_notes) + 1})"
                cells.append(skip_notes[why[t]])
            elif cell is not None and cell(t) is not None:
                cells.append(cell(t))
            else:
                cells.append(fmt(v, digits))
        sg = vals.get("slotgate")
        rat = []
        for other in others:
            if added and other == "direct":
                rat.append("–")
            else:
                rat.append(ratio(sg, vals.get(other)))
        out.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    out.append("")
    out.append("Ratios are slotgate ÷ other: above 1 is better for throughput rows, below 1 is better "
               "for latency, CPU and memory rows. Each cell is the best of the repeats (noise on a shared machine only makes figures worse).")
    if any(k[1] == "slo" for k in rows):
        out.append("")
        out.append("p99-bound rows: one search per target (not repeated): oha open loop at "
                   f"{meta.get('slo_conns', 64)} connections, {meta.get('slo_step_s', '?')} s per step, the offered rate doubled "
                   "from 1/16 of the target's closed-loop peak until p99 ≥ 5 ms, then bisected "
                   f"{meta.get('slo_bisect', '?')} times per bound (geometric). A step holds when every answer is a 200 and "
                   "oha achieved ≥ 90% of the offered rate. \"≥ N\": held at the highest rate tried (1.5× the closed-loop "
                   "peak); \"< N\": not held even at the lowest rate tried.")
    for why, mark in skip_notes.items():
        out.append("")
        out.append(f"{mark}: {why}")
    notes = meta.get("notes")
    if notes:
        out.append("")
        out.append(notes)
    text = "\n".join(out) + "\n"
    if a.targets_file:
        text += "\n" + targets_text(rows, meta)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


def header_lines(meta) -> list[str]:
    """What the table was measured on and with: machine, command, date, driver, logs, loads."""
    lines = [
        f"- **date**: {meta.get('when', '?')}",
        f"- **machine**: {meta.get('machine', '?')}",
        f"- **command**: `{meta.get('command', '?')}`",
        f"- **slotgate IO driver**: {meta.get('driver', '?')}",
        f"- **mode**: {meta.get('mode', '?')}",
        f"- **request logs**: {meta.get('logs', '?')}",
        f"- **load generators**: {meta.get('loadgen', 'wrk')}",
        f"- **load average before/after**: {meta.get('load_before', '?')} / {meta.get('load_after', '?')}",
    ]
    if meta.get("versions"):
        lines.append(f"- **versions**: {meta['versions']}")
    if meta.get("elapsed_s"):
        lines.append(f"- **run time**: {int(meta['elapsed_s']) // 60} min {int(meta['elapsed_s']) % 60} s")
    return lines


def slo_row(rows, target, bound):
    rs = [r for r in rows.get((target, "slo"), []) if r.get("bounds")]
    return rs[0]["bounds"].get(bound) if rs else None


def slo_rate(rows, target, bound):
    """The rate that held the bound; None when none did (the cell then says "< N")."""
    b = slo_row(rows, target, bound)
    return (b.get("rate") or None) if b else None


def slo_cell(rows, target, bound):
    b = slo_row(rows, target, bound)
    if b is None:
        return None
    if not b.get("rate"):
        return f"< {b.get('below', 0):,} (p99 {b.get('p99_ms_at_below') or float('nan'):,.1f} ms there)"
    return ("≥ " if b.get("at_max") else "") + f"{b['rate']:,}"


def targets_text(rows, meta) -> str:
    """slotgate's performance targets against nginx and HAProxy, met or not, with the ratio."""

    def med(target, kind, key):
        vals = [r[key] for r in rows.get((target, kind), []) if r.get(key) is not None]
        if not vals:
            return None
        return max(vals) if key in HIGHER_IS_BETTER else min(vals)

    lines = ["| target | figure | met |", "|---|---|---|"]

    def add(name, val, ok):
        lines.append(f"| {name} | {val} | {'yes' if ok else 'no' if ok is not None else '?'} |")

    sg, ng, hp, hb = (med(t, "rps", "rps") for t in ("slotgate", "nginx", "haproxy", "haproxy-body"))
    if sg and ng:
        add("measured req/s ≥ 1.2× nginx", f"{sg / ng:.3f}×", sg / ng >= 1.2)
    if sg and hp:
        add("measured req/s ≥ 1.2× HAProxy", f"{sg / hp:.3f}×", sg / hp >= 1.2)
    if sg and hb:
        add("measured req/s ≥ 1.2× HAProxy (body routing)", f"{sg / hb:.3f}×", sg / hb >= 1.2)
    d50, d99 = med("direct", "lat", "p50_ms"), med("direct", "lat", "p99_ms")
    for q, d in (("p50", d50), ("p99", d99)):
        s, n = med("slotgate", "lat", f"{q}_ms"), med("nginx", "lat", f"{q}_ms")
        if None not in (s, n, d):
            add(f"added {q} ≤ nginx's", f"{s - d:+.3f} ms vs {n - d:+.3f} ms", s - d <= n - d)
    for c in (1, 4):
        k = f"seq{c}"
        for q in ("p50", "p99"):
            d, s_, n = (med(t, k, f"{q}_ms") for t in ("direct", "slotgate", "nginx"))
            if None not in (s_, n, d):
                add(f"concurrency {c}: added {q} ≤ nginx's", f"{s_ - d:+.3f} ms vs {n - d:+.3f} ms", s_ - d <= n - d)
    for b in ("1.0", "5.0"):
        for other in ("nginx", "haproxy"):
            sv, ov = slo_row(rows, "slotgate", b), slo_row(rows, other, b)
            if sv is None or ov is None:
                continue
            s_rate, o_rate = sv.get("rate") or 0, ov.get("rate") or 0
            # Neither held the bound at any rate tried: the search says nothing ("?").
            ok = None if s_rate == o_rate == 0 else (s_rate >= o_rate and s_rate > 0)
            add(f"highest req/s with p99 < {float(b):g} ms ≥ {'HAProxy' if other == 'haproxy' else other}'s",
                f"{slo_cell(rows, 'slotgate', b)} vs {slo_cell(rows, other, b)}", ok)
    sc, nc = med("slotgate", "rps", "cpu_us_per_req"), med("nginx", "rps", "cpu_us_per_req")
    hc = med("haproxy", "rps", "cpu_us_per_req")
    if sc and nc:
        add("req/s per core (from CPU/request) ≥ 1.2× nginx", f"{nc / sc:.3f}×", nc / sc >= 1.2)
    if sc and hc:
        add("req/s per core (from CPU/request) ≥ 1.2× HAProxy", f"{hc / sc:.3f}×", hc / sc >= 1.2)
    if sc and nc:
        add("CPU/request ≤ 0.8× nginx", f"{sc / nc:.3f}× ({sc:.2f} vs {nc:.2f} µs)", sc / nc <= 0.8)
    dg = med("direct", "paced", "gap_p99_ms")
    sgp, ngp = med("slotgate", "paced", "gap_p99_ms"), med("nginx", "paced", "gap_p99_ms")
    if None not in (dg, sgp, ngp):
        add("SSE added inter-event p99 ≤ nginx's", f"{sgp - dg:+.3f} ms vs {ngp - dg:+.3f} ms", sgp - dg <= ngp - dg)
    ri = rows.get(("slotgate", "rss_idle"))
    if ri:
        v = min(r["rss_kib"] for r in ri) / 1024
        add("RSS idle ≤ 10 MB", f"{v:.1f} MiB", v * 1.048576 <= 10)
    rs = rows.get(("slotgate", "hold_streams"))
    if rs:
        v = min(r["rss_kib"] for r in rs) / 1024
        add("RSS with 1,000 open streams ≤ 64 MB", f"{v:.1f} MiB", v * 1.048576 <= 64)
    return "Targets (slotgate against nginx and HAProxy):\n\n" + "\n".join(lines) + "\n"


def capped_label(budget) -> str:
    """Row of the proxy-bound phase (run.sh and run_tls.sh): the proxy held to a CPU quota."""
    return f"max req/s with the proxy held to {budget}% of a core (cgroup quota)"


def best_any(rows, kind, key):
    """`key` of any row of `kind` (all rows of a run share it), or None."""
    return next((r[key] for (_, k), rs in rows.items() if k == kind for r in rs if r.get(key) is not None), None)


def per_core(cpu_us):
    return None if not cpu_us else 1e6 / cpu_us


def sub(a, b):
    if a is None or b is None:
        return None
    return a - b


def kib_mib(v):
    return None if v is None else v / 1024.0


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)

    b = sp.add_parser("body")
    b.add_argument("--size", type=int, required=True)
    b.add_argument("--model", required=True)
    b.add_argument("--stream", action="store_true")
    b.add_argument("--max-tokens", type=int)
    b.add_argument("--out", required=True)
    b.set_defaults(fn=cmd_body)

    pr = sp.add_parser("proc")
    pr.add_argument("--pids", required=True)
    pr.set_defaults(fn=cmd_proc)

    tr = sp.add_parser("tree")
    tr.add_argument("--pid", type=int, required=True)
    tr.set_defaults(fn=cmd_tree)

    s = sp.add_parser("sse")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--streams", type=int, default=200)
    s.add_argument("--model", required=True)
    s.add_argument("--max-tokens", type=int)
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(fn=cmd_sse)

    h = sp.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--n", type=int, default=1000)
    h.add_argument("--model", required=True)
    h.add_argument("--stream", action="store_true")
    h.add_argument("--max-tokens", type=int)
    h.add_argument("--pids", required=True)
    h.add_argument("--settle", type=float, default=2.0)
    h.add_argument("--timeout", type=float, default=30.0)
    h.set_defaults(fn=cmd_hold)

    pb = sp.add_parser("probe")
    pb.add_argument("--port", type=int, required=True)
    pb.add_argument("--path", default="/v1/chat/completions")
    pb.add_argument("--model", help="POST a small body for this model; GET when absent")
    pb.add_argument("--deadline", type=float, default=20.0)
    pb.set_defaults(fn=cmd_probe)

    rs = sp.add_parser("ratesearch")
    rs.add_argument("--url", required=True)
    rs.add_argument("--body", required=True, help="request body file (POST, application/json)")
    rs.add_argument("--conns", type=int, default=64)
    rs.add_argument("--bounds", default="1,5", help="p99 bounds in ms, comma-separated")
    rs.add_argument("--start", type=int, default=1000, help="first offered rate, req/s")
    rs.add_argument("--min", type=int, default=2, help="lowest rate tried when --start fails")
    rs.add_argument("--max", type=int, default=256000, help="highest rate tried")
    rs.add_argument("--step-s", type=int, default=3, help="seconds per step")
    rs.add_argument("--pause-s", type=float, default=0.5, help="pause between steps")
    rs.add_argument("--bisect", type=int, default=4, help="bisections per bound")
    rs.add_argument("--retries", type=int, default=1, help="extra tries of a step whose p99 misses a bound")
    rs.add_argument("--insecure", action="store_true", help="HTTPS without certificate checks")
    rs.set_defaults(fn=cmd_ratesearch)

    r = sp.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--out")
    r.add_argument("--targets-file", action="store_true", help="append the issue-7 targets table")
    r.set_defaults(fn=cmd_report)

    for sub in (s, h, pb):
        sub.add_argument("--tls-ca", help="speak HTTPS, trusting this CA (PEM)")

    a = p.parse_args()
    if getattr(a, "tls_ca", None):
        import ssl

        global SSL_CTX
        SSL_CTX = ssl.create_default_context(cafile=a.tls_ca)
    a.fn(a)


if __name__ == "__main__":
    main()
