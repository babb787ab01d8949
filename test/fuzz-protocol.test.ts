// Protocol fuzz (docs/design.md, "Wire contract"): 100,000 random and mutated packets over
// several connections. Every Request must be answered with a fitting reply or Error and the
// connection kept; every violation must cost exactly its connection, logged once;
// afterwards the daemon opens a device correctly and its fds and RSS are back at the
// baseline.
import test from 'ava';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { runFuzz, type FuzzStats } from '../testkit/fuzz.js';
import { highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { createLoop } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen } from './helpers/hostile-requests.js';

const PACKETS = 100_000;
const WARMUP_PACKETS = 10_000;
const WORKERS = 16;
/**
 * RSS may end this much above the baseline. The baseline is taken after a warm-up run, when
 * V8's heap has grown to what this workload needs; a leak of 170 bytes per packet would
 * already exceed it.
 */
const RSS_MARGIN = 16 * 1024 * 1024;
const VIOLATION_MSG = 'protocol violation; dropping connection';

function summary(s: FuzzStats): string {
  return `${s.packets} packets (${s.requests} requests, ${s.violations} violations, ${s.empties} empty, ${s.withFd} with an fd) ` +
    `over ${s.connections} connections; ${s.responses} responses, ${s.opened} Opened; codes ${JSON.stringify(s.codes)}`;
}

test('100,000 fuzzed packets: requests answered, violations drop only their connection, nothing leaks', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(110_000);
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (replay with FUZZ_SEED=${seed})`);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  const target = { ownDiskseq: loop.diskseq, foreignFloor: highestDiskseqNow() + 1_000_000n };
  const fresh = daemon.footprint();

  const warmup = await runFuzz({ socketPath: daemon.socketPath, target, packets: WARMUP_PACKETS, workers: WORKERS, seed: seed ^ 0x5eed });
  t.deepEqual(warmup.failures, [], 'warm-up run');
  const baseline = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  const violationsBefore = daemon.count(VIOLATION_MSG);
  const auditsBefore = daemon.count('audit');
  t.log(`daemon at start: ${describeFootprint(fresh)}; after a ${WARMUP_PACKETS}-packet warm-up (baseline): ${describeFootprint(baseline)}`);

  const stats = await runFuzz({ socketPath: daemon.socketPath, target, packets: PACKETS, workers: WORKERS, seed });
  t.log(summary(stats));
  t.log(`fuzz throughput: ${Math.round(stats.packets / (stats.elapsedMs / 1000))} packets/s (${(stats.elapsedMs / 1000).toFixed(1)} s, ${WORKERS} connections at a time)`);
  t.log(`packet kinds: ${JSON.stringify(stats.categories)}`);

  t.true(daemon.alive, `the daemon died: ${daemon.describe()}`);
  t.is(stats.packets, PACKETS);
  t.deepEqual(stats.failures, [], `${stats.failureCount} failures in total`);
  t.is(stats.failureCount, 0);
  // Enough of each kind was sent for the run to mean something.
  t.true(stats.requests > PACKETS / 2 && stats.violations > 1000 && stats.withFd > 100 && stats.empties > 100 && stats.opened > 1000, summary(stats));
  // Each violation is logged exactly once, a zero-length packet too: the daemon tells it
  // from end-of-file (docs/design.md, "Known kernel limits").
  const logged = stats.violations + stats.empties;
  t.is(await daemon.waitForCount(VIOLATION_MSG, violationsBefore + logged) - violationsBefore, logged);
  // ... and each request gets exactly one audit line.
  t.is(await daemon.waitForCount('audit', auditsBefore + stats.requests) - auditsBefore, stats.requests);
  t.is(daemon.count('internal error'), 0, 'no request ended in an internal error');

  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'a valid open after the fuzz');
  const fds = await daemon.settleFds(baseline.fds);
  const after = daemon.footprint();
  t.log(`daemon after the fuzz and a valid open: ${describeFootprint(after)} (baseline ${describeFootprint(baseline)})`);
  t.is(fds, baseline.fds, `fd count back at the baseline; open now:\n${daemon.fdTargets().join('\n')}`);
  t.true(after.rssBytes <= baseline.rssBytes + RSS_MARGIN,
    `RSS ${describeFootprint(after)} more than ${RSS_MARGIN / 1048576} MiB above the baseline ${describeFootprint(baseline)}`);
});
