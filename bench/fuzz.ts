/**
 * A longer protocol fuzz than the test suite's, for `npm run bench`-style use: starts the
 * daemon, attaches one loop device, sends N random and mutated packets over several
 * connections (see testkit/fuzz.ts) and reports packets/s, what was sent and
 * answered, and the daemon's fd count and RSS before and after. Needs root.
 *
 *   node dist/bench/fuzz.js [--packets N] [--workers N] [--seed N]
 *
 * Exit status 1 when the fuzz found a failure, the daemon died, or fds leaked.
 */
import { parseArgs } from 'node:util';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { runFuzz, type FuzzStats } from '../testkit/fuzz.js';
import { highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { createLoop } from '../testkit/loop.js';

/** The result of one bench run, for a bench runner that collects figures. */
export interface FuzzBenchResult {
  packetsPerSecond: number;
  stats: FuzzStats;
  before: string;
  after: string;
  leakedFds: number;
}

/** Runs the fuzz bench with `packets` packets over `workers` connections. */
export async function benchFuzz(packets: number, workers: number, seed: number): Promise<FuzzBenchResult> {
  const loop = createLoop();
  const daemon = await DaemonProcess.start({ capture: 'counts' }).catch((error: unknown) => {
    loop.cleanup();
    throw error;
  });
  try {
    const target = { ownDiskseq: loop.diskseq, foreignFloor: highestDiskseqNow() + 1_000_000n };
    // Warm up (JIT, lazily created fds such as the thread pool's) before the baseline.
    await runFuzz({ socketPath: daemon.socketPath, target, packets: 2000, workers, seed: seed ^ 0x5eed });
    await new Promise((r) => setTimeout(r, 200));
    const before = daemon.footprint();
    const rss: number[] = [];
    const sampler = setInterval(() => rss.push(Math.round(daemon.rssBytes() / 1048576)), 1000);
    const stats = await runFuzz({ socketPath: daemon.socketPath, target, packets, workers, seed }).finally(() => clearInterval(sampler));
    console.log(`  daemon RSS each second (MiB): ${rss.join(' ')}`);
    const fds = await daemon.settleFds(before.fds);
    const after = daemon.footprint();
    if (!daemon.alive) throw new Error(`the daemon died: ${daemon.describe()}`);
    return {
      packetsPerSecond: stats.packets / (stats.elapsedMs / 1000),
      stats, before: describeFootprint(before), after: describeFootprint(after), leakedFds: fds - before.fds,
    };
  } finally {
    await daemon.stop();
    loop.cleanup();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { packets: { type: 'string', default: '1000000' }, workers: { type: 'string', default: '16' }, seed: { type: 'string' } },
  });
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const result = await benchFuzz(Number(values.packets), Number(values.workers), seed);
  const s = result.stats;
  console.log(`fuzz: ${s.packets} packets in ${(s.elapsedMs / 1000).toFixed(1)} s = ${Math.round(result.packetsPerSecond)} packets/s ` +
    `(seed ${seed}, ${values.workers} connections at a time)`);
  console.log(`  ${s.requests} requests, ${s.responses} responses (${s.opened} Opened), ${s.violations} violations, ` +
    `${s.empties} empty, ${s.withFd} with an fd, ${s.connections} connections`);
  console.log(`  error codes: ${JSON.stringify(s.codes)}`);
  console.log(`  daemon before: ${result.before}; after: ${result.after}; leaked fds: ${result.leakedFds}`);
  for (const f of s.failures) console.log(`  FAILURE: ${f}`);
  if (s.failureCount > 0 || result.leakedFds !== 0) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
