/**
 * `npm run bench` (root): runs the benchmarks against a loop device of its own and a
 * daemon on a private socket, and prints the results table (bench/results-table.ts): each
 * figure next to its floor measured in the same run, the ratio and the goal. First of all
 * the comparison with the C floor broker, and with the same broker doing its open on a worker
 * thread as diskseqd does (bench/broker-compare.ts). Timing lives here,
 * never in tests.
 *
 * The open round trip is measured over both front-ends of the one daemon: protobuf on
 * SEQPACKET and io.systemd.StorageProvider.Acquire over Varlink.
 *
 * BENCH_ROUNDS (default 3) sets the rotating rounds of the C broker comparison.
 * BENCH_N (default 10000) sets the requests per latency series; BENCH_LOG_LEVEL (default
 * info, as in production: one audit line per request) the daemon's log level;
 * BENCH_RSS_REQUESTS (default 100000, 0 to skip) how many requests the RSS check sends;
 * BENCH_PROFILE_DIR, when set, makes the benchmarked daemon write a V8 CPU profile there.
 * Then the benchmarks with scripts of their own run: partition appears -> fd, the scan of
 * 10,000 synthetic disks, fuzz throughput, the LD_PRELOAD shim's cost, cold start, the
 * Python client's open round trip against the TypeScript client's, and an open under
 * bursts of Lists.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { connect } from '../client/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { VarlinkClient } from '../testkit/varlink-client.js';
import { WireClient } from '../testkit/wire-client.js';
import { varlinkRoundTrip } from './varlink-roundtrip.js';
import { compareWithFloor, median, type BrokerComparison, type ClientRun } from './broker-compare.js';
import { buildCPrograms } from './c-programs.js';
import { hungDeviceRun } from './hung-device.js';
import { ratioAtLeast, ratioAtMost, ResultTable } from './results-table.js';
import { scaleRun, type ScaleResult } from './scale.js';
import {
  inProcessAsync, inProcessSync, libraryRoundTrip, roundTrip, summarise, throughput, type Series,
} from './open-roundtrip.js';

const N = Number(process.env.BENCH_N ?? 10_000);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
const RSS_REQUESTS = Number(process.env.BENCH_RSS_REQUESTS ?? 100_000);
const SCALE_DISKS = (process.env.BENCH_SCALE_DISKS ?? '10,10000').split(',').filter(Boolean).map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MiB = 2 ** 20;

/** The rows of the C broker comparison: medians over the rounds, ratios of the medians. */
function addFloorRows(table: ResultTable, c: BrokerComparison): void {
  const m = (runs: ClientRun[], key: 'p50Us' | 'p99Us' | 'opensPerSecond') => median(runs.map((r) => r[key]));
  table.add({ figure: 'open p50, 1 connection, sequential (us)', floorName: 'C broker', floor: m(c.sequential.floor, 'p50Us'), value: m(c.sequential.daemon, 'p50Us'), goal: ratioAtMost(2) });
  table.add({ figure: 'open p99, 1 connection, sequential (us)', floorName: 'C broker', floor: m(c.sequential.floor, 'p99Us'), value: m(c.sequential.daemon, 'p99Us') });
  table.add({ figure: 'opens/s, 4 connections x 1 in flight', floorName: 'C broker', floor: m(c.parallel.floor, 'opensPerSecond'), value: m(c.parallel.daemon, 'opensPerSecond'), digits: 0, goal: ratioAtLeast(0.4) });
  table.add({ figure: 'open p50, 4 connections x 1 in flight (us)', floorName: 'C broker', floor: m(c.parallel.floor, 'p50Us'), value: m(c.parallel.daemon, 'p50Us') });
  table.add({ figure: 'open p99, 4 connections x 1 in flight (us)', floorName: 'C broker', floor: m(c.parallel.floor, 'p99Us'), value: m(c.parallel.daemon, 'p99Us') });
  // The same figures against the C broker whose open runs on a worker thread, as diskseqd's does.
  table.add({ figure: 'open p50, 1 connection, sequential (us)', floorName: 'C broker, one hop', floor: m(c.sequential.hop, 'p50Us'), value: m(c.sequential.daemon, 'p50Us') });
  table.add({ figure: 'opens/s, 4 connections x 1 in flight', floorName: 'C broker, one hop', floor: m(c.parallel.hop, 'opensPerSecond'), value: m(c.parallel.daemon, 'opensPerSecond'), digits: 0 });
}

/** Each round's figures, so the spread behind the medians shows. */
function describeRounds(c: BrokerComparison): string {
  const f = (runs: ClientRun[], key: 'p50Us' | 'opensPerSecond') => runs.map((r) => r[key].toFixed(key === 'p50Us' ? 1 : 0)).join(' ');
  return [
    `rounds (rotating): p50 us  C broker ${f(c.sequential.floor, 'p50Us')} | one hop ${f(c.sequential.hop, 'p50Us')} | diskseqd ${f(c.sequential.daemon, 'p50Us')}`,
    `                   opens/s C broker ${f(c.parallel.floor, 'opensPerSecond')} | one hop ${f(c.parallel.hop, 'opensPerSecond')} | diskseqd ${f(c.parallel.daemon, 'opensPerSecond')}`,
  ].join('\n');
}

/** One table row: the first cell left-aligned, the rest right-aligned (numbers to 0.1). */
function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => {
    const text = typeof c === 'number' ? c.toFixed(1) : c;
    return i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!);
  }).join('  ');
}

/**
 * exec -> "serving", in milliseconds, over a few daemon starts (includes Node's own startup).
 * Each with a cache directory of its own, so without a code cache: first starts after an upgrade.
 */
async function startupSeries(runs: number): Promise<Series> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const daemon = await DaemonProcess.start({ logLevel: 'info' });
    samples.push(performance.now() - t0);
    await daemon.stop();
  }
  return summarise(`exec -> "serving", first starts (milliseconds, ${runs} starts)`, samples);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (loop devices, and the daemon opens devices)');
  const loop = createLoop({});
  let daemon: DaemonProcess | undefined;
  const clients: WireClient[] = [];
  const closers: (() => void)[] = [];
  const table = new ResultTable(`diskseqd against its floors (daemon log level ${LOG_LEVEL}, medians of ${ROUNDS} rotating rounds)`);
  let rounds = '';
  try {
    const comparison = await compareWithFloor(loop, { rounds: ROUNDS, sequentialOpens: N, parallelOpens: 4 * N, logLevel: LOG_LEVEL });
    addFloorRows(table, comparison);
    rounds = describeRounds(comparison);
    if (existsSync('/dev/fuse')) {
      const hang = await hungDeviceRun(buildCPrograms(), loop, Math.min(N, 5000), LOG_LEVEL);
      const around = (key: 'p50Us' | 'p99Us') => (hang.before[key] + hang.after[key]) / 2;
      table.add({ figure: 'root open p50 while another loop hangs (us)', floorName: 'no hang, same run', floor: around('p50Us'), value: hang.during.p50Us });
      table.add({ figure: 'root open p99 while another loop hangs (us)', floorName: 'no hang, same run', floor: around('p99Us'), value: hang.during.p99Us });
    } else {
      rounds += '\n(no /dev/fuse: the hung-device rows were not measured)';
    }
    const startup = await startupSeries(5);
    const profileDir = process.env.BENCH_PROFILE_DIR;
    // Through the bin's shebang, as installed: its flags and environment shape the RSS.
    daemon = await DaemonProcess.start({ logLevel: LOG_LEVEL, varlink: true, throughShebang: true, nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : undefined });
    const client = WireClient.connect(daemon.socketPath);
    clients.push(client);
    const library = await connect({ socketPath: daemon.socketPath });
    closers.push(() => library.close());
    const varlink = VarlinkClient.connect(daemon.varlinkPath!);
    closers.push(() => varlink.close());
    const rssStart = daemon.rssBytes();

    // Warm up both sides (JIT, page cache, the daemon's index and any lazily made nodes).
    await roundTrip(client, loop.diskseq, 500);
    await libraryRoundTrip(library, loop.diskseq, 500);
    await varlinkRoundTrip(varlink, loop.diskseq, 500);
    await inProcessAsync(loop.devPath, loop.diskseq, 500);
    let requests = 1000;

    const series: Series[] = [];
    const asyncFirst = await inProcessAsync(loop.devPath, loop.diskseq, N);
    const sync = inProcessSync(loop.devPath, loop.diskseq, N);
    const rt = await roundTrip(client, loop.diskseq, N);
    const lib = await libraryRoundTrip(library, loop.diskseq, N);
    const vl = await varlinkRoundTrip(varlink, loop.diskseq, N);
    // The protobuf figure again after the Varlink one, so drift shows up.
    const rtAgain = await roundTrip(client, loop.diskseq, N);
    rtAgain.name += ', again';
    // The in-process figure again after the round trips, so drift shows up.
    const asyncAgain = await inProcessAsync(loop.devPath, loop.diskseq, N);
    asyncAgain.name += ', again';
    series.push(asyncFirst, sync, rt, lib, vl, rtAgain, asyncAgain);
    requests += 4 * N;

    for (let i = 0; i < 3; i++) clients.push(WireClient.connect(daemon.socketPath));
    const opsPerSecond = await throughput(clients.slice(0, 4), loop.diskseq, 4 * N, 4);
    requests += 4 * N;
    const rss: string[] = [`${(rssStart / MiB).toFixed(1)} (start)`, `${(daemon.rssBytes() / MiB).toFixed(1)} (${requests})`];
    while (requests < RSS_REQUESTS) {
      const batch = Math.min(25_000, RSS_REQUESTS - requests);
      await throughput(clients.slice(0, 4), loop.diskseq, batch, 4);
      requests += batch;
      rss.push(`${(daemon.rssBytes() / MiB).toFixed(1)} (${requests})`);
    }

    await daemon.stop();
    const scale: ScaleResult[] = [];
    for (const disks of SCALE_DISKS) scale.push(await scaleRun(loop, disks, Math.min(N, 5000)));

    const widths = [60, 6, 8, 8, 8];
    console.log(`\ndiskseqd bench: ${N} requests per series, loop device ${loop.name}, daemon log level ${LOG_LEVEL}, load average ${(await loadAverage()).join(' ')}\n`);
    console.log(row(['series (microseconds unless stated)', 'count', 'p50', 'p99', 'mean'], widths));
    for (const s of [...series, ...scale.map((r) => r.open), startup]) console.log(row([s.name, String(s.count), s.p50, s.p99, s.mean], widths));
    const asyncBase = Math.min(asyncFirst.p50, asyncAgain.p50);
    console.log('');
    console.log(`round trip p50 / in-process sync open+verify p50:  ${(rt.p50 / sync.p50).toFixed(1)}x  (target <= 10x; the ~5 us in-process open + verify is this one)`);
    console.log(`round trip p50 / in-process async open+verify p50: ${(rt.p50 / asyncBase).toFixed(1)}x  (the addon's threadpool hop included on both sides)`);
    console.log(`client library round trip p50 / in-process sync:   ${(lib.p50 / sync.p50).toFixed(1)}x`);
    const protobufBase = Math.min(rt.p50, rtAgain.p50);
    console.log(`Varlink Acquire p50 / protobuf open p50 (same daemon, same disk): ${(vl.p50 / protobufBase).toFixed(2)}x  (${vl.p50.toFixed(1)} us vs ${protobufBase.toFixed(1)} us)`);
    console.log(`opens/s, 4 connections x 4 in flight, from one client process: ${opsPerSecond.toFixed(0)}  (target >= 30000)`);
    console.log(`daemon RSS in MiB (after N requests): ${rss.join(', ')}  (target <= 64 and flat; bench/memory.ts below has the three workloads)`);
    for (const r of scale) {
      console.log(`List of ${r.disks} disks: ${r.listMs.toFixed(1)} ms; an open sent meanwhile from another client took ${r.openDuringListMs.toFixed(1)} ms`);
    }
    if (scale.length >= 2) {
      const [small, large] = [scale[0]!, scale[scale.length - 1]!];
      console.log(`open p50 at ${large.disks} disks / at ${small.disks} disks: ${(large.open.p50 / small.open.p50).toFixed(2)}x  (target: the same)`);
    }
    console.log(`\n${table.render()}\n\n${rounds}`);
  } finally {
    for (const close of closers) close();
    for (const c of clients) c.close();
    await daemon?.stop();
    loop.cleanup();
  }
}

async function loadAverage(): Promise<string[]> {
  const { loadavg } = await import('node:os');
  return loadavg().map((l) => l.toFixed(2));
}

/**
 * The benchmarks that have their own scripts, run one after another as child processes
 * after the table above (BENCH_ONLY_MAIN=1 skips them).
 */
const SCRIPTS = ['partition-appear.js', 'scan-scale.js', 'fuzz.js', 'preload-open.js', 'audit-cost.js', 'memory.js', 'cold-start.js', 'python-client.js', 'list-burst.js'];

function runScripts(): void {
  for (const script of SCRIPTS) {
    const path = fileURLToPath(new URL(script, import.meta.url));
    if (!existsSync(path)) continue;
    console.log(`\n--- ${script.replace(/\.js$/, '')} ---`);
    const run = spawnSync(process.execPath, [path], { stdio: 'inherit' });
    if (run.status !== 0) {
      console.error(`${script} failed (exit ${run.status ?? run.signal})`);
      process.exitCode = 1;
    }
  }
}

main().then(() => {
  if (process.env.BENCH_ONLY_MAIN !== '1') runScripts();
}, (error: unknown) => {
  console.error(`bench failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
});
