"""The load-generator peer: an open-loop streaming client in the style of the serving benchmarks
LLM teams run (asyncio + aiohttp, one task per request, requests started on a fixed schedule
whatever earlier ones are doing, each streaming an OpenAI chat completion and timing its first
token and the gaps between tokens). Written for this bench.

    python peer_client.py --url URL --rate 1000 --seconds 6 --out records.csv

It idles for --idle seconds after start-up and prints its VmRSS (the idle baseline), then sends
rate * seconds requests, waits for them up to --timeout each, and writes one CSV row per request:
intended_ms,sent_ms,end_ms,status,ok,events,tokens,ttft_ms,itl_max_ms (times from the schedule's
start; end_ms empty for a request that never finished)."""

import argparse
import asyncio
import csv
import json
import time

import aiohttp


async def one(session, url, body, intended, t0, record):
    record["sent"] = time.perf_counter() - t0
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            record["status"] = r.status
            last = None
            async for line in r.content:
                if not line.startswith(b"data:"):
                    continue
                record["events"] += 1
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                chunk = json.loads(payload)
                choices = chunk.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    now = time.perf_counter() - t0
                    if last is None:
                        record["ttft"] = now - intended
                    else:
                        record["itl_max"] = max(record["itl_max"], now - last)
                    last = now
                    record["tokens"] += 1
            record["ok"] = r.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        record["ok"] = False
    record["end"] = time.perf_counter() - t0


async def run(args):
    body = json.dumps(
        {
            "model": "sim",
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 256,
            "stream": True,
            # As faultline's load generator sends by default: the usage chunk is one more event.
            "stream_options": {"include_usage": True},
        }
    ).encode()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    total = int(args.rate * args.seconds)
    records = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.sleep(args.idle)
        # The idle baseline, read from /proc like every other figure, just before sending.
        with open("/proc/self/status") as f:
            rss = next(line.split()[1] for line in f if line.startswith("VmRSS:"))
        print(f"idle VmRSS {rss} kB", flush=True)
        t0 = time.perf_counter()
        tasks = []
        for i in range(total):
            intended = i / args.rate
            delay = intended - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            rec = {
                "intended": intended,
                "sent": None,
                "end": None,
                "status": None,
                "ok": False,
                "events": 0,
                "tokens": 0,
                "ttft": None,
                "itl_max": 0.0,
            }
            records.append(rec)
            tasks.append(asyncio.create_task(one(session, args.url, body, intended, t0, rec)))
        # Bounded: whatever has not finished a timeout after the last send is cancelled.
        _, pending = await asyncio.wait(tasks, timeout=args.timeout + 1)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["intended_ms", "sent_ms", "end_ms", "status", "ok", "events", "tokens", "ttft_ms", "itl_max_ms"]
        )
        ms = lambda s: "" if s is None else f"{s * 1000:.3f}"  # noqa: E731
        for r in records:
            w.writerow(
                [
                    ms(r["intended"]),
                    ms(r["sent"]),
                    ms(r["end"]),
                    r["status"] or "",
                    int(r["ok"]),
                    r["events"],
                    r["tokens"],
                    ms(r["ttft"]),
                    ms(r["itl_max"]),
                ]
            )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--idle", type=float, default=1.0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if not args.url.startswith("http://127.0.0.1:"):
        raise SystemExit("peer_client: the bench sends only to 127.0.0.1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
