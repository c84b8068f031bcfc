#!/usr/bin/env python3
"""Soak client for bench/soak.sh: N idle keep-alive connections plus S concurrent streams.

Phase 1 opens KEEP connections and does one request on each (they stay open, keep-alive).
Phase 2 runs STREAMS workers, each looping streamed chat completions for SECS seconds, while
the KEEP connections sit idle. Phase 3 does one more request on every KEEP connection (so
keep-alive survived the load), then closes everything. Prints one JSON line of figures.
Loopback only; bounded in count and time.
"""
import asyncio, json, sys, time

HOST, PORT = sys.argv[1], int(sys.argv[2])
KEEP, STREAMS, SECS = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
BODY = b'{"model":"mock","stream":%s,"messages":[{"role":"user","content":"hi"}]}'

def req(stream):
    body = BODY % (b"true" if stream else b"false")
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body

async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    hdr = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdr[k.strip().lower()] = v.strip()
    if "content-length" in hdr:
        await r.readexactly(int(hdr["content-length"]))
        return status, True
    if "chunked" in hdr.get("transfer-encoding", ""):
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await r.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return status, True
            await r.readexactly(size + 2)
    return status, False

stats = {"keepalive_conns": 0, "keepalive_requests": 0, "streams_done": 0, "errors": 0, "error_samples": []}

def err(e):
    stats["errors"] += 1
    if len(stats["error_samples"]) < 5:
        stats["error_samples"].append(repr(e)[:200])

async def keep_open(sem):
    async with sem:
        r, w = await asyncio.open_connection(HOST, PORT)
    w.write(req(False)); await w.drain()
    st, ok = await read_response(r)
    if st != 200 or not ok:
        raise RuntimeError(f"status {st}")
    stats["keepalive_requests"] += 1
    stats["keepalive_conns"] += 1
    return r, w

async def again(rw, sem):
    r, w = rw
    try:
        await sem.acquire()
        w.write(req(False)); await w.drain()
        st, ok = await read_response(r)
        if st != 200 or not ok:
            raise RuntimeError(f"status {st}")
        stats["keepalive_requests"] += 1
    except Exception as e:
        err(e)
    finally:
        sem.release()
        w.close()

async def streamer(deadline):
    r = w = None
    while time.monotonic() < deadline:
        try:
            if w is None:
                r, w = await asyncio.open_connection(HOST, PORT)
            w.write(req(True)); await w.drain()
            st, ok = await read_response(r)
            if st != 200 or not ok:
                raise RuntimeError(f"stream status {st} complete={ok}")
            stats["streams_done"] += 1
        except Exception as e:
            err(e)
            if w: w.close()
            r = w = None
    if w: w.close()

async def main():
    t0 = time.monotonic()
    sem = asyncio.Semaphore(500)
    res = await asyncio.gather(*[keep_open(sem) for _ in range(KEEP)], return_exceptions=True)
    conns = []
    for x in res:
        if isinstance(x, Exception): err(x)
        else: conns.append(x)
    opened = time.monotonic() - t0
    print(json.dumps({"phase": "opened", "conns": len(conns), "secs": round(opened, 1)}), flush=True)
    deadline = time.monotonic() + SECS
    await asyncio.gather(*[streamer(deadline) for _ in range(STREAMS)])
    # At most 500 at once: every in-flight proxied request costs the proxy three descriptors
    # (client, its read-side watcher, upstream), and ulimit -n is capped at 20000 here.
    sem3 = asyncio.Semaphore(500)
    await asyncio.gather(*[again(c, sem3) for c in conns])
    stats["secs"] = round(time.monotonic() - t0, 1)
    print(json.dumps(stats), flush=True)

asyncio.run(main())
