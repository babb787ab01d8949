/**
 * Registry scale benchmark (issue 4): the initial sysfs scan of a synthetic tree of 10,000
 * disks next to one of 10 disks, measured side by side in one run (median of several
 * interleaved runs; ratios survive a noisy VM, absolute numbers do not), plus the cost of
 * an in-memory lookup (hit and miss) at both sizes.
 *
 * What is timed: `new Registry(new Sysfs(root, procDevices), log).scan()` — one listing of
 * class/block, one uevent read per disk, attributes only for loop devices — on a tree in
 * tmpfs (/dev/shm) that was just written, so the page and dentry caches are warm; the first
 * run of each size is reported separately and not counted in the median.
 *
 * Run: `node dist/bench/scan-scale.js` (no root needed). BENCH_SCAN_RUNS sets the runs.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { createLogger } from '../src/log.js';
import { Registry } from '../src/registry.js';
import { Sysfs } from '../src/sysfs.js';
import { createSyntheticSysfs, SYNTHETIC_DISKSEQ_BASE, type SyntheticSysfs } from '../testkit/synthetic-sysfs.js';

/** The figures this benchmark reports. */
export interface ScanScaleResult {
  runs: number;
  /** Median scan time in milliseconds, per tree size (disks). */
  medianMs: Record<number, number>;
  /** The first (uncounted) run per size, in milliseconds. */
  firstMs: Record<number, number>;
  /** Median ns per registry.find() of a hit and of a miss, per tree size. */
  lookupNs: Record<number, { hit: number; miss: number }>;
  /** For scale: the same scan of this machine's real /sys (sysfs reads cost more than tmpfs). */
  realSys: { entries: number; medianMs: number };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function timeScan(tree: SyntheticSysfs): { ms: number; registry: Registry } {
  const registry = new Registry(new Sysfs(tree.root, tree.procDevices), createLogger('silent'));
  const t0 = performance.now();
  registry.scan();
  const ms = performance.now() - t0;
  if (registry.size !== tree.disks.length) throw new Error(`scan indexed ${registry.size} of ${tree.disks.length} disks`);
  return { ms, registry };
}

/** Median over 5 batches of ns per lookup of `diskseq`. */
function timeLookup(registry: Registry, diskseq: bigint, expectHit: boolean): number {
  const n = 200_000;
  const batches: number[] = [];
  for (let b = 0; b < 5; b++) {
    let hits = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) if (registry.find(diskseq) !== undefined) hits++;
    batches.push(((performance.now() - t0) * 1e6) / n);
    if ((hits === n) !== expectHit) throw new Error(`lookup of ${diskseq}: ${hits} hits of ${n}`);
  }
  return median(batches);
}

/** Builds the trees, runs the scans interleaved, and removes the trees. */
export function scanScale(sizes: number[] = [10, 10_000], runs = Number(process.env.BENCH_SCAN_RUNS ?? 7)): ScanScaleResult {
  const trees = new Map<number, SyntheticSysfs>();
  try {
    for (const size of sizes) trees.set(size, createSyntheticSysfs({ count: size, partitionsEvery: 500 }));
    const samples = new Map<number, number[]>(sizes.map((s) => [s, []]));
    const firstMs: Record<number, number> = {};
    const lookupNs: Record<number, { hit: number; miss: number }> = {};
    for (let r = 0; r <= runs; r++) {
      for (const size of sizes) {
        const { ms, registry } = timeScan(trees.get(size)!);
        if (r === 0) {
          firstMs[size] = ms;
          const hit = SYNTHETIC_DISKSEQ_BASE + 2n * BigInt(size >> 1);
          lookupNs[size] = { hit: timeLookup(registry, hit, true), miss: timeLookup(registry, SYNTHETIC_DISKSEQ_BASE + 1n, false) };
        } else {
          samples.get(size)!.push(ms);
        }
      }
    }
    const medianMs: Record<number, number> = {};
    for (const size of sizes) medianMs[size] = median(samples.get(size)!);
    const real: number[] = [];
    for (let r = 0; r < runs; r++) {
      const registry = new Registry(new Sysfs(), createLogger('silent'));
      const t0 = performance.now();
      registry.scan();
      real.push(performance.now() - t0);
    }
    const entries = new Sysfs().listBlockDevices().length;
    return { runs, medianMs, firstMs, lookupNs, realSys: { entries, medianMs: median(real) } };
  } finally {
    for (const tree of trees.values()) tree.remove();
  }
}

/** Prints the figures. */
export function printScanScale(result: ScanScaleResult): void {
  const [small, big] = Object.keys(result.medianMs).map(Number).sort((a, b) => a - b) as [number, number];
  console.log(`\nregistry initial scan, synthetic sysfs on tmpfs (median of ${result.runs} interleaved runs after one uncounted run)`);
  for (const size of [small, big]) {
    console.log(`  ${String(size).padStart(6)} disks: ${result.medianMs[size]!.toFixed(2).padStart(9)} ms median   (first run ${result.firstMs[size]!.toFixed(2)} ms; ${((result.medianMs[size]! * 1000) / size).toFixed(1)} us/disk)`);
  }
  console.log(`  ratio ${big}/${small}: ${(result.medianMs[big]! / result.medianMs[small]!).toFixed(0)}x for ${big / small}x the disks`);
  console.log(`for scale, the same scan of this machine's /sys (${result.realSys.entries} block devices, most of them unbound loops): ${result.realSys.medianMs.toFixed(2)} ms median (${((result.realSys.medianMs * 1000) / result.realSys.entries).toFixed(1)} us/entry)`);
  console.log(`registry.find() in memory (median ns per call): ` + [small, big].map((s) => `${s} disks hit ${result.lookupNs[s]!.hit.toFixed(0)} / miss ${result.lookupNs[s]!.miss.toFixed(0)}`).join('; '));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) printScanScale(scanScale());
