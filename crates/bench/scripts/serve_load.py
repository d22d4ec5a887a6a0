#!/usr/bin/env python3
"""Load check of `seqlab serve` (a script, not a timed test): N concurrent streaming clients for S seconds
against one language model; prints requests/s, tokens/s, latency to the first token and between tokens
(p50/p99), errors, and the server's peak memory (VmHWM of its process).

    python3 serve_load.py --base http://127.0.0.1:8080 --model NAME --clients 8 --seconds 60 --pid PID

Standard library only. Each client loops: POST /v1/completions with "stream": true, temperature 0.8, a
fresh seed per request, reads the server-sent events to [DONE]. One output line of JSON."""
import argparse
import http.client
import json
import statistics
import threading
import time
from urllib.parse import urlparse


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def client(args, stop_at, seed0, out):
    url = urlparse(args.base)
    seed = seed0
    while time.monotonic() < stop_at:
        seed += 1000
        body = json.dumps({"model": args.model, "prompt": args.prompt, "max_tokens": args.max_tokens,
                           "temperature": 0.8, "seed": seed, "stream": True})
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            if response.status != 200:
                out["errors"] += 1
                response.read()
                conn.close()
                continue
            last = None
            tokens = 0
            done = False
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    out["errors"] += 1
                    break
                if chunk["choices"][0]["text"]:
                    now = time.monotonic()
                    if last is None:
                        out["first"].append(now - start)
                    else:
                        out["gaps"].append(now - last)
                    last = now
                    tokens += 1
            conn.close()
            if done:
                out["requests"] += 1
                out["tokens"] += tokens
            else:
                out["errors"] += 1
        except OSError:
            out["errors"] += 1


def peak_memory_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080")
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=100)
    ap.add_argument("--prompt", default="Alice was beginning to get very tired of sitting by her sister")
    ap.add_argument("--pid", type=int, default=None, help="the server's process, for its peak memory")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    stop_at = time.monotonic() + args.seconds
    results = [{"requests": 0, "tokens": 0, "errors": 0, "first": [], "gaps": []} for _ in range(args.clients)]
    threads = [threading.Thread(target=client, args=(args, stop_at, i, results[i])) for i in range(args.clients)]
    begin = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - begin
    first = [x for r in results for x in r["first"]]
    gaps = [x for r in results for x in r["gaps"]]
    ms = lambda v: None if v is None else round(1000 * v, 2)
    print(json.dumps({
        "label": args.label,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(sum(r["requests"] for r in results) / elapsed, 2),
        "tokens_per_s": round(sum(r["tokens"] for r in results) / elapsed, 1),
        "first_token_ms_p50": ms(percentile(first, 0.5)),
        "first_token_ms_p99": ms(percentile(first, 0.99)),
        "per_token_ms_p50": ms(percentile(gaps, 0.5)),
        "per_token_ms_p99": ms(percentile(gaps, 0.99)),
        "errors": sum(r["errors"] for r in results),
        "server_peak_mib": peak_memory_mib(args.pid) if args.pid else None,
    }))


if __name__ == "__main__":
    main()
