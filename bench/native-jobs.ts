/**
 * `node dist/bench/native-jobs.js` (root): the JS-thread cost of the addon's async calls.
 * Issues batches of N native.probeFd(fd) calls (N = 1 and 16) on an fd of a loop device
 * of its own, awaits each batch, and prints per call: the synchronous time spent inside the
 * call (create + queue), the wall time of the batch divided by N, the JS thread's CPU time
 * (schedstat: includes work the addon defers to later in the loop turn, and the
 * settlements) and the process's CPU time (user, system: the worker threads too) per call.
 * Then the same for openDevice + closeAsync pairs.
 *
 * NATIVE_ADDON=/path/to/diskseqd.node compares another build of the addon under the same
 * conditions; BENCH_ROUNDS (default 20000 calls per series) sets the length.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { native as builtNative, type NativeBinding } from '../native/index.js';
import { createLoop } from '../testkit/loop.js';

const CALLS = Number(process.env.BENCH_ROUNDS ?? 20_000);
const native: NativeBinding = process.env.NATIVE_ADDON
  ? (createRequire(import.meta.url)(process.env.NATIVE_ADDON) as NativeBinding)
  : builtNative;

/** CPU time of the calling (JS) thread in microseconds: /proc/thread-self/schedstat, in ns. */
function threadCpuUs(): number {
  return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1000;
}

interface Result {
  name: string;
  syncUs: number;
  wallUs: number;
  jsThreadUs: number;
  userUs: number;
  systemUs: number;
}

/** Runs `calls` calls of `issue` in batches of n awaited together; times per call. */
async function series(name: string, n: number, calls: number, issue: () => Promise<unknown>): Promise<Result> {
  const batches = Math.max(1, Math.floor(calls / n));
  let syncMs = 0;
  const cpu0 = process.cpuUsage();
  const thread0 = threadCpuUs();
  const t0 = performance.now();
  const pending: Promise<unknown>[] = new Array(n);
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      pending[i] = issue();
      syncMs += performance.now() - s;
    }
    await Promise.all(pending);
  }
  const wallMs = performance.now() - t0;
  const thread = threadCpuUs() - thread0;
  const cpu = process.cpuUsage(cpu0);
  const total = batches * n;
  return {
    name: `${name}, N=${n}`,
    syncUs: (syncMs * 1000) / total,
    wallUs: (wallMs * 1000) / total,
    jsThreadUs: thread / total,
    userUs: cpu.user / total,
    systemUs: cpu.system / total,
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (loop device)');
  const loop = createLoop({});
  const opened = await native.openDevice(loop.devPath, native.constants.O_RDONLY);
  try {
    const probe = (): Promise<unknown> => native.probeFd(opened.fd);
    const openClose = async (): Promise<void> => {
      const o = await native.openDevice(loop.devPath, native.constants.O_RDONLY);
      await native.closeAsync(o.fd);
    };
    await series('warm-up', 16, 2000, probe);
    await series('warm-up', 16, 2000, openClose);
    const results: Result[] = [];
    for (const n of [1, 16]) results.push(await series('probeFd', n, CALLS, probe));
    // One "call" here is an openDevice and then a closeAsync: two addon jobs (sync time
    // covers the openDevice call only; the closeAsync is issued from its continuation).
    for (const n of [1, 16]) results.push(await series('openDevice+closeAsync', n, CALLS / 2, openClose));
    console.log(`addon: ${process.env.NATIVE_ADDON ?? 'build/Release/diskseqd.node'}`);
    console.log('series (us per call)              sync     wall  JS-thread   user   system');
    for (const r of results) {
      const cells = [r.syncUs, r.wallUs, r.jsThreadUs, r.userUs, r.systemUs].map((v) => v.toFixed(2).padStart(8));
      console.log(`${r.name.padEnd(30)} ${cells.join(' ')}`);
    }
  } finally {
    native.close(opened.fd);
    loop.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
});
