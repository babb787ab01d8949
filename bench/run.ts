/**
 * `npm run bench` (root): runs the benchmarks against a loop device of its own and a
 * daemon on a private socket, and prints one table. Timing lives here, never in tests.
 */
import { DaemonProcess } from '../test/helpers/daemon.js';
import { createLoop } from '../test/helpers/loop.js';
import { WireClient } from '../test/helpers/wire-client.js';
import { inProcessAsync, inProcessSync, roundTrip, throughput, type Series } from './open-roundtrip.js';

const N = Number(process.env.BENCH_N ?? 10_000);

/** One table row: the first cell left-aligned, the rest right-aligned (numbers to 0.1). */
function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => {
    const text = typeof c === 'number' ? c.toFixed(1) : c;
    return i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!);
  }).join('  ');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (loop devices, and the daemon opens devices)');
  const loop = createLoop({});
  let daemon: DaemonProcess | undefined;
  const clients: WireClient[] = [];
  try {
    daemon = await DaemonProcess.start({ logLevel: process.env.BENCH_LOG_LEVEL ?? 'info' });
    const client = WireClient.connect(daemon.socketPath);
    clients.push(client);
    const rssStart = daemon.rssBytes();

    // Warm up both sides (JIT, page cache, the daemon's index and any lazily made nodes).
    await roundTrip(client, loop.diskseq, 500);
    await inProcessAsync(loop.devPath, loop.diskseq, 500);

    const series: Series[] = [];
    series.push(await inProcessAsync(loop.devPath, loop.diskseq, N));
    series.push(inProcessSync(loop.devPath, loop.diskseq, N));
    const rt = await roundTrip(client, loop.diskseq, N);
    series.push(rt);
    // Measure the in-process figure again after the round trips, so drift shows up.
    const again = await inProcessAsync(loop.devPath, loop.diskseq, N);
    again.name += ', again';
    series.push(again);

    for (let i = 0; i < 3; i++) clients.push(WireClient.connect(daemon.socketPath));
    const opsPerSecond = await throughput(clients.slice(0, 4), loop.diskseq, 4 * N, 4);
    const rssEnd = daemon.rssBytes();

    const widths = [60, 6, 8, 8, 8];
    console.log(`\ndiskseqd bench: ${N} requests per series, loop device ${loop.name} (diskseq ${loop.diskseq}), daemon log level ${process.env.BENCH_LOG_LEVEL ?? 'info'}\n`);
    console.log(row(['series (microseconds)', 'count', 'p50', 'p99', 'mean'], widths));
    for (const s of series) console.log(row([s.name, String(s.count), s.p50, s.p99, s.mean], widths));
    const asyncBase = Math.min(series[0]!.p50, again.p50);
    const syncBase = series[1]!.p50;
    console.log('');
    console.log(`round trip p50 / in-process async p50: ${(rt.p50 / asyncBase).toFixed(2)}x   (target <= 10x)`);
    console.log(`round trip p50 / in-process sync p50:  ${(rt.p50 / syncBase).toFixed(2)}x`);
    console.log(`opens/s, 4 connections x 4 in flight, one client process: ${opsPerSecond.toFixed(0)}`);
    console.log(`daemon RSS: ${(rssStart / 2 ** 20).toFixed(1)} MiB at start, ${(rssEnd / 2 ** 20).toFixed(1)} MiB after ${5 * N + 500} requests`);
  } finally {
    for (const c of clients) c.close();
    await daemon?.stop();
    loop.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
});
