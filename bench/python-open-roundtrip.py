"""Sequential opens through the Python client (one connection, one request at a time):
request sent -> verified fd in hand (the client's own fstat/sysfs/ioctl re-check included);
the fd is closed after the sample. Prints one JSON line: p50/p99/mean in microseconds.

    python bench/python-open-roundtrip.py --socket PATH --diskseq N [--n 10000] [--aio]
(run by bench/python-client.ts, which compares it with the TypeScript client in the same run)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import google.protobuf
from google.protobuf.internal import api_implementation

import diskseqd


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "mean": sum(ordered) / len(ordered)}


def run_sync(socket_path: str, diskseq: int, n: int, warmup: int) -> list[float]:
    samples = []
    with diskseqd.connect(socket_path) as client:
        for i in range(warmup + n):
            t0 = time.perf_counter_ns()
            opened = client.open(diskseq)
            elapsed = (time.perf_counter_ns() - t0) / 1000
            opened.close()
            if i >= warmup:
                samples.append(elapsed)
    return samples


async def run_aio(socket_path: str, diskseq: int, n: int, warmup: int) -> list[float]:
    samples = []
    client = await diskseqd.aio.connect(socket_path)
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter_ns()
            opened = await client.open(diskseq)
            elapsed = (time.perf_counter_ns() - t0) / 1000
            opened.close()
            if i >= warmup:
                samples.append(elapsed)
    finally:
        await client.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--diskseq", type=int, required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--aio", action="store_true")
    args = parser.parse_args()
    if args.aio:
        samples = asyncio.run(run_aio(args.socket, args.diskseq, args.n, args.warmup))
    else:
        samples = run_sync(args.socket, args.diskseq, args.n, args.warmup)
    print(json.dumps({**summary(samples), "protobuf": google.protobuf.__version__,
                      "implementation": api_implementation.Type(), "client": "asyncio" if args.aio else "sync"}))


if __name__ == "__main__":
    main()
