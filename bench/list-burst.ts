/**
 * An open's latency under bursts of List requests (docs/design.md, "Limits: fair turns"):
 * BENCH_BURSTS (default 5) times, 200 connections each send 16 Lists and close at once
 * without reading, from a process of their own (bench/list-burst-client.ts), while this
 * process opens a loop device of its own, one open at a time, and times each (request sent
 * -> verified fd received). The floor is the same series with no burst, measured first in
 * the same run; the figures are p50/p99/max and their ratios to the floor.
 *
 * BENCH_BURST_LOOPS (default 6) extra loop devices, each with two partitions, give every
 * List some devices to describe, as on a machine with disks; BENCH_LOG_LEVEL (default
 * info: audit lines are part of the daemon's work). Run as root:
 * `node dist/bench/list-burst.js`. To compare with another revision, copy the two compiled
 * files (dist/bench/list-burst.js, list-burst-client.js) into that checkout's dist/bench/
 * and run them there: the clients are the same, only the daemon differs.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';

const BURSTS = Number(process.env.BENCH_BURSTS ?? 5);
const EXTRA_LOOPS = Number(process.env.BENCH_BURST_LOOPS ?? 6);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
const FLOOR_OPENS = 2000;
const CLIENT = fileURLToPath(new URL('./list-burst-client.js', import.meta.url));

interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

function summarise(samples: number[]): Summary {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { count: samples.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! };
}

/** One timed open (milliseconds); throws unless it delivered the loop's diskseq. */
async function timedOpen(client: WireClient, loop: LoopFixture): Promise<number> {
  const t0 = performance.now();
  const outcome = await client.open({ diskseq: loop.diskseq });
  const ms = performance.now() - t0;
  if (!outcome.ok) throw new Error(`open failed: ${outcome.code} ${outcome.message}`);
  const probe = native.probeFdSync(outcome.fd);
  native.close(outcome.fd);
  if (probe.diskseq !== loop.diskseq) throw new Error(`open delivered diskseq ${probe.diskseq}`);
  return ms;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (loop devices)');
  const loop = createLoop({});
  const extras = Array.from({ length: EXTRA_LOOPS }, () => createLoop({ partscan: true, partitionsMiB: [2, 2] }));
  let daemon: DaemonProcess | undefined;
  const client: { c?: WireClient } = {};
  try {
    // Its log goes to a file: a pipe this process reads late would stall the daemon's writes.
    daemon = await DaemonProcess.start({ logLevel: LOG_LEVEL, capture: 'file' });
    client.c = WireClient.connect(daemon.socketPath);
    const listed = (await client.c.list(true)).length;
    for (let i = 0; i < 200; i++) await timedOpen(client.c, loop); // warm-up
    const floor: number[] = [];
    for (let i = 0; i < FLOOR_OPENS; i++) floor.push(await timedOpen(client.c, loop));

    const burster = spawn(process.execPath, [CLIENT, daemon.socketPath, String(BURSTS), '200', '500'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const sends: number[] = [];
    const burstAt: number[] = [];
    let done = false;
    const started = performance.now();
    createInterface({ input: burster.stdout }).on('line', (line) => {
      const event = JSON.parse(line) as { burst?: number; sendMs?: number; done?: boolean };
      if (event.sendMs !== undefined) {
        sends.push(event.sendMs);
        burstAt.push(performance.now() - started - event.sendMs);
      }
      if (event.done) done = true;
    });
    const during: number[] = [];
    const at: number[] = [];
    const timed = async (): Promise<void> => {
      at.push(performance.now() - started);
      during.push(await timedOpen(client.c!, loop));
    };
    while (!done) await timed();
    // The daemon may still be at work on the last burst: keep timing for a second more.
    const tail = performance.now() + 1000;
    while (performance.now() < tail) await timed();
    const elapsed = performance.now() - started;

    const f = summarise(floor);
    const d = summarise(during);
    const row = (name: string, s: Summary): string =>
      `${name.padEnd(44)} ${String(s.count).padStart(6)} ${s.p50.toFixed(2).padStart(9)} ${s.p99.toFixed(2).padStart(9)} ${s.max.toFixed(2).padStart(9)}`;
    console.log(`\nlist-burst: ${BURSTS} bursts of 200 connections x 16 Lists, closed at once; ${listed} devices listed; ` +
      `daemon of ${fileURLToPath(new URL('../../', import.meta.url))}, log level ${LOG_LEVEL}; each burst sent in ${sends.map((s) => s.toFixed(0)).join(', ')} ms\n`);
    console.log(`${'series (open round trip, milliseconds)'.padEnd(44)} ${'count'.padStart(6)} ${'p50'.padStart(9)} ${'p99'.padStart(9)} ${'max'.padStart(9)}`);
    console.log(row('floor: no burst', f));
    console.log(row(`during the bursts (${(elapsed / 1000).toFixed(1)} s)`, d));
    console.log(`\nratios to the floor: p50 ${(d.p50 / f.p50).toFixed(1)}x, p99 ${(d.p99 / f.p99).toFixed(1)}x, max ${(d.max / f.max).toFixed(1)}x`);
    if (process.env.BENCH_TRACE === '1') {
      const worst = during.map((ms, i) => ({ ms, at: at[i]! })).sort((a, b) => b.ms - a.ms).slice(0, 8);
      console.log(`bursts began at ${burstAt.map((t) => t.toFixed(0)).join(', ')} ms; slowest opens (sent at ms: took ms): ` +
        worst.map((w) => `${w.at.toFixed(0)}: ${w.ms.toFixed(1)}`).join(', '));
    }
    console.log(`daemon RSS after: ${(daemon.rssBytes() / 2 ** 20).toFixed(1)} MiB, fds ${daemon.fdCount()}`);
  } finally {
    client.c?.close();
    await daemon?.stop();
    for (const extra of extras) extra.cleanup();
    loop.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`list-burst failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
});
