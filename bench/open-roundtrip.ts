/**
 * The open round-trip benchmark: the p50/p99 of request -> verified fd in hand
 * through the daemon, next to the in-process open + verify cost through the addon,
 * measured in the same run on the same loop device (ratios survive a noisy VM; absolute
 * numbers do not).
 */
import { closeSync, constants, openSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { native } from '../native/index.js';
import type { Client } from '../client/index.js';
import type { WireClient } from '../testkit/wire-client.js';

/** Latency summary of one measured series, in microseconds. */
export interface Series {
  name: string;
  count: number;
  p50: number;
  p99: number;
  mean: number;
}

/** Summarises raw samples (microseconds). */
export function summarise(name: string, samples: number[]): Series {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { name, count: samples.length, p50: at(0.5), p99: at(0.99), mean };
}

/** Throws when a probe does not show the expected instance: a benchmark of a wrong open is worthless. */
function check(probe: { diskseq: bigint | null; loopBound: boolean | null }, diskseq: bigint): void {
  if (probe.diskseq !== diskseq || probe.loopBound !== true) throw new Error(`verification failed: ${probe.diskseq} != ${diskseq}`);
}

/** In-process, through the addon's off-loop openDevice (open + probe in the threadpool) + close. */
export async function inProcessAsync(path: string, diskseq: bigint, n: number): Promise<Series> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { fd, probe } = await native.openDevice(path, constants.O_RDONLY);
    native.close(fd);
    samples.push((performance.now() - t0) * 1000);
    check(probe, diskseq);
  }
  return summarise('in-process open+verify (addon openDevice, async)', samples);
}

/** In-process, synchronous: open + probeFdSync + close on the main thread. */
export function inProcessSync(path: string, diskseq: bigint, n: number): Series {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const fd = openSync(path, constants.O_RDONLY);
    const probe = native.probeFdSync(fd);
    closeSync(fd);
    samples.push((performance.now() - t0) * 1000);
    check(probe, diskseq);
  }
  return summarise('in-process open+verify (sync loop)', samples);
}

/** One client, one request at a time: request sent -> fd received; the fd is closed after timing. */
export async function roundTrip(client: WireClient, diskseq: bigint, n: number): Promise<Series> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const outcome = await client.open({ diskseq });
    const elapsed = (performance.now() - t0) * 1000;
    if (!outcome.ok) throw new Error(`open failed: ${outcome.code} ${outcome.message}`);
    native.close(outcome.fd);
    samples.push(elapsed);
  }
  return summarise('daemon round trip, 1 client, sequential', samples);
}

/** Opens/s with `clients` connections, each keeping `depth` requests in flight. */
export async function throughput(clients: WireClient[], diskseq: bigint, total: number, depth: number): Promise<number> {
  let issued = 0;
  const worker = async (client: WireClient): Promise<void> => {
    while (issued < total) {
      issued++;
      const outcome = await client.open({ diskseq });
      if (!outcome.ok) throw new Error(`open failed: ${outcome.code}`);
      native.close(outcome.fd);
    }
  };
  const t0 = performance.now();
  await Promise.all(clients.flatMap((c) => Array.from({ length: depth }, () => worker(c))));
  return total / ((performance.now() - t0) / 1000);
}

/** Like roundTrip, through the client library (which re-checks BLKGETDISKSEQ itself). */
export async function libraryRoundTrip(client: Client, diskseq: bigint, n: number): Promise<Series> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { fd } = await client.open({ diskseq });
    samples.push((performance.now() - t0) * 1000);
    native.close(fd);
  }
  return summarise('client library round trip, 1 client, sequential', samples);
}
