/**
 * Bench: the added cost of one open() through the LD_PRELOAD shim, against a plain open()
 * of the device node, measured side by side in one run (ratios, not absolutes: these are
 * noisy shared VMs). Needs root and loop devices; run `node dist/bench/preload-open.js`.
 *
 * Each figure is open(O_RDONLY|O_CLOEXEC) + close() timed inside one C process
 * (native/preload/test/preload-probe.c, `bench` mode), p50 over ITERS calls, and the
 * median of ROUNDS rounds run round-robin:
 *   plain          /dev/loopN, no shim
 *   plain+verify   /dev/loopN + BLKGETDISKSEQ + fstat, no shim (the in-process recipe)
 *   passthrough    /dev/loopN with the shim loaded (its cost for every other path)
 *   shimmed        /dev/disk/by-diskseq/N through the shim and the real daemon
 *   null-broker    the same through the shim and native/preload/test/null-broker.c, which
 *                  hands out one pre-opened fd: the shim's own cost (connect, protobuf-c,
 *                  SCM_RIGHTS, re-check) without the daemon's work
 * It also prints the median `us` of the daemon's audit lines (its own time per request).
 */
import { buildProbe, createTestDisk, probe, startNullBroker, startShimDaemon } from '../testkit/preload.js';
import { tempDir, type TeardownHost } from '../testkit/cleanup.js';

const ROUNDS = 5;
const FAST_ITERS = 20_000;
const SHIM_ITERS = 2_000;

const teardowns: Array<() => void | Promise<void>> = [];
const host: TeardownHost = { teardown: (fn) => teardowns.push(fn) };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = tempDir(host, 'diskseqd-preload-bench-');
  const probePath = buildProbe(dir);
  const disk = createTestDisk(host);
  const daemon = await startShimDaemon(host);
  const socket = daemon.socketPath;
  const byDiskseq = `/dev/disk/by-diskseq/${disk.diskseq}`;
  const nullSocket = await startNullBroker(host, dir, disk.devPath, disk.diskseq);
  const cases = {
    plain: () => probe(probePath, ['bench', disk.devPath, String(FAST_ITERS)], { shim: false }),
    'plain+verify': () => probe(probePath, ['bench', disk.devPath, String(FAST_ITERS), 'verify'], { shim: false }),
    passthrough: () => probe(probePath, ['bench', disk.devPath, String(FAST_ITERS)], { socket }),
    shimmed: () => probe(probePath, ['bench', byDiskseq, String(SHIM_ITERS)], { socket }),
    'null-broker': () => probe(probePath, ['bench', byDiskseq, String(SHIM_ITERS)], { socket: nullSocket }),
  };
  const p50s: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  const p99s: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, runCase] of Object.entries(cases)) {
      const result = runCase();
      if (typeof result.p50 !== 'number') throw new Error(`${name}: ${JSON.stringify(result)}`);
      p50s[name]!.push(result.p50);
      p99s[name]!.push(result.p99 as number);
    }
  }
  const plain = median(p50s.plain!);
  console.log(`preload-open: ${ROUNDS} rounds, p50 per round (median of rounds), open+close`);
  for (const name of Object.keys(cases)) {
    const p50 = median(p50s[name]!);
    console.log(`  ${name.padEnd(13)} p50 ${(p50 / 1000).toFixed(2).padStart(7)} µs  p99 ${(median(p99s[name]!) / 1000).toFixed(2).padStart(7)} µs  ${(p50 / plain).toFixed(2).padStart(6)}x plain`);
  }
  const shimmed = median(p50s.shimmed!);
  console.log(`  added cost of a shimmed open: ${((shimmed - plain) / 1000).toFixed(1)} µs (${(shimmed / plain).toFixed(1)}x a plain open; ` +
    `${(shimmed / median(p50s['plain+verify']!)).toFixed(1)}x the in-process open+verify)`);
  console.log(`  pass-through cost for other paths: ${((median(p50s.passthrough!) - plain)).toFixed(0)} ns per open`);
  const audits = daemon.audits().filter((l) => typeof l.us === 'number').map((l) => l.us);
  if (audits.length > 0) console.log(`  daemon's own time per request (audit us, median of ${audits.length}): ${median(audits)} µs`);
}

try {
  await main();
} finally {
  for (const fn of teardowns.reverse()) {
    try {
      await fn();
    } catch (error) {
      console.error(`cleanup: ${(error as Error).message}`);
    }
  }
}
