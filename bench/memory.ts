/**
 * Resident memory of the daemon as shipped — exec'd through bin/diskseqd.cjs's shebang line,
 * with whatever flags and environment that line gives (docs/design.md, "Memory") — at the
 * end of each of three workloads, each on a fresh daemon: 100,000 opens (4 connections, 4
 * in flight each), 100,000 fuzz packets (testkit/fuzz.ts, 16 connections), and 1,100
 * connections opened at once (1,024 served, the rest refused) and closed. RSS is sampled
 * every 250 ms; "last quarter" is the growth over the last quarter of the run: RSS at the
 * end minus RSS at three quarters, and the highest RSS of the last quarter minus the
 * highest before it (a new high is growth, a GC's dip is not). Goal: <= 64 MiB at the end,
 * < 2 MiB growth in the last quarter. Also where the memory is at the end (smaps_rollup).
 *
 * Run: node dist/bench/memory.js   (root). BENCH_MEMORY_N sets the opens and packets;
 * BENCH_MEMORY_ONLY=opens|fuzz|connections runs only the workloads whose name has that word.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { runFuzz } from '../testkit/fuzz.js';
import { highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { createLoop } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';
import { throughput } from './open-roundtrip.js';

const MiB = 2 ** 20;
const N = Number(process.env.BENCH_MEMORY_N ?? 100_000);
const ONLY = process.env.BENCH_MEMORY_ONLY;

/** One workload's figures, in MiB. */
interface MemoryResult {
  name: string;
  startMiB: number;
  endMiB: number;
  peakMiB: number;
  lastQuarterMiB: number;
  lastQuarterNewHighMiB: number;
  where: string;
}

/** Anonymous vs file-backed RSS at the end, from smaps_rollup. */
function where(pid: number): string {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return `${(kb('Anonymous') / 1024).toFixed(1)} MiB anonymous (V8 heap, malloc), ${((kb('Rss') - kb('Anonymous')) / 1024).toFixed(1)} MiB file pages (node and libraries)`;
}

async function measure(name: string, work: (daemon: DaemonProcess) => Promise<void>): Promise<MemoryResult> {
  const daemon = await DaemonProcess.start({ throughShebang: true, capture: 'counts' });
  const samples: number[] = [];
  try {
    const start = daemon.rssBytes() / MiB;
    const sampler = setInterval(() => samples.push(daemon.rssBytes() / MiB), 250);
    try {
      await work(daemon);
    } finally {
      clearInterval(sampler);
    }
    if (!daemon.alive) throw new Error(`daemon died during ${name}: ${daemon.describe()}`);
    const end = daemon.rssBytes() / MiB;
    samples.push(end);
    const q3 = Math.floor(samples.length * 0.75);
    const before = Math.max(...samples.slice(0, q3));
    return {
      name, startMiB: start, endMiB: end, peakMiB: Math.max(...samples),
      lastQuarterMiB: end - samples[q3]!, lastQuarterNewHighMiB: Math.max(0, Math.max(...samples.slice(q3)) - before),
      where: where(daemon.pid),
    };
  } finally {
    await daemon.stop();
  }
}

/** Runs the three workloads and prints their figures. */
export async function memoryBench(): Promise<MemoryResult[]> {
  const loop = createLoop({});
  try {
    const results: MemoryResult[] = [];
    console.log(`\ndaemon RSS through its shebang (MiB; sampled every 250 ms)`);
    console.log(`  ${'workload'.padEnd(36)} ${'start'.padStart(6)} ${'peak'.padStart(6)} ${'end'.padStart(6)} ${'last quarter'.padStart(13)} ${'new high'.padStart(9)}   goal: end <= 64, last quarter < 2`);
    const measured = async (name: string, work: (daemon: DaemonProcess) => Promise<void>): Promise<void> => {
      if (ONLY !== undefined && !name.includes(ONLY)) return;
      const r = await measure(name, work);
      console.log(`  ${r.name.padEnd(36)} ${r.startMiB.toFixed(1).padStart(6)} ${r.peakMiB.toFixed(1).padStart(6)} ${r.endMiB.toFixed(1).padStart(6)} ${r.lastQuarterMiB.toFixed(1).padStart(13)} ${r.lastQuarterNewHighMiB.toFixed(1).padStart(9)}   ${r.endMiB <= 64 && r.lastQuarterNewHighMiB < 2 ? 'met' : 'NOT met'}`);
      console.log(`  ${''.padEnd(36)} at the end: ${r.where}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
      results.push(r);
    };
    await measured(`${N} opens`, async (daemon) => {
      const clients = [0, 1, 2, 3].map(() => WireClient.connect(daemon.socketPath));
      try {
        await throughput(clients, loop.diskseq, N, 4);
      } finally {
        for (const c of clients) c.close();
      }
    });
    await measured(`${N} fuzz packets`, async (daemon) => {
      const target = { ownDiskseq: loop.diskseq, foreignFloor: highestDiskseqNow() + 1_000_000n };
      const stats = await runFuzz({ socketPath: daemon.socketPath, target, packets: N, workers: 16, seed: 1 });
      if (stats.failureCount > 0) throw new Error(`fuzz failures: ${stats.failures.join('; ')}`);
    });
    await measured('1100 connections opened and closed', async (daemon) => {
      const fds: number[] = [];
      try {
        for (let i = 0; i < 1100; i++) fds.push(native.connectSeqpacket(daemon.socketPath, true));
        await new Promise((r) => setTimeout(r, 1000)); // accepted (or refused past 1,024)
        for (const fd of fds.splice(0)) native.close(fd);
        await new Promise((r) => setTimeout(r, 500));
        const client = WireClient.connect(daemon.socketPath);
        const outcome = await client.open({ diskseq: loop.diskseq });
        client.close();
        if (!outcome.ok) throw new Error(`open after the connections closed: ${outcome.code}`);
        native.close(outcome.fd);
      } finally {
        for (const fd of fds) native.close(fd);
      }
    });
    return results;
  } finally {
    loop.cleanup();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  memoryBench().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
