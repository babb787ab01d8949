// Varlink fuzz: 20,000 messages over 8 connections at a time (testkit/varlink-fuzz.ts).
// Every call is answered as its method allows and audited once, every violation costs
// exactly its connection and is logged once, and afterwards the daemon opens a device
// correctly with its fds back at the baseline and its RSS flat.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { expectAcquired, PROVIDER } from './helpers/varlink.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { createLoop } from '../testkit/loop.js';
import { VarlinkClient } from '../testkit/varlink-client.js';
import { runVarlinkFuzz, type VarlinkFuzzTarget } from '../testkit/varlink-fuzz.js';
import { MAX_MESSAGE_BYTES } from '../src/varlink/message.js';

const MESSAGES = Number(process.env.VARLINK_FUZZ_MESSAGES ?? 20_000);
const WARMUP = 2_000;
const WORKERS = 8;
const RSS_MARGIN = 16 * 1024 * 1024;
const VIOLATION = 'protocol violation; dropping connection';

test('20,000 fuzzed Varlink messages: calls answered and audited, violations drop only their connection, nothing leaks', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(110_000);
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (replay with FUZZ_SEED=${seed})`);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts', varlink: true }, t);
  const fdSource = join(daemon.dir, 'fd-source');
  writeFileSync(fdSource, 'x');
  const target: VarlinkFuzzTarget = {
    path: daemon.varlinkPath!, ownDiskseq: loop.diskseq, foreignFloor: highestDiskseqNow() + 1_000_000n, fdSource, maxMessageBytes: MAX_MESSAGE_BYTES,
  };
  const fresh = daemon.footprint();
  const warmup = await runVarlinkFuzz(target, WARMUP, WORKERS, seed ^ 0x5eed);
  t.deepEqual(warmup.failures, [], 'warm-up run');
  await daemon.waitForCount('audit', warmup.calls);
  const baseline = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  const auditsBefore = daemon.count('audit');
  const violationsBefore = daemon.count(VIOLATION);
  t.log(`daemon at start: ${describeFootprint(fresh)}; after a ${WARMUP}-message warm-up (baseline): ${describeFootprint(baseline)}`);

  const stats = await runVarlinkFuzz(target, MESSAGES, WORKERS, seed);
  t.log(`${stats.messages} messages: ${stats.calls} calls (${stats.oneway} oneway), ${stats.violations} violations (${stats.withFd} with an fd), ` +
    `${stats.split} batches cut into pieces, over ${stats.connections} connections; ${stats.acquired} fds acquired; ` +
    `${Math.round(stats.messages / (stats.elapsedMs / 1000))} messages/s; errors ${JSON.stringify(stats.errors)}`);
  t.true(daemon.alive, daemon.describe());
  t.deepEqual(stats.failures, [], `${stats.failureCount} failures`);
  t.true(stats.messages >= MESSAGES && stats.violations > 50 && stats.withFd > 5 && stats.acquired > 1000 && stats.oneway > 100 && stats.split > 100, JSON.stringify(stats));
  t.is(await daemon.waitForCount('audit', auditsBefore + stats.calls) - auditsBefore, stats.calls, 'one audit line per call');
  t.is(await daemon.waitForCount(VIOLATION, violationsBefore + stats.violations) - violationsBefore, stats.violations, 'each violation logged once');
  t.is(daemon.count('internal error'), 0);

  const client = VarlinkClient.connect(target.path);
  t.teardown(() => client.close());
  const fd = expectAcquired(t, await client.call1(`${PROVIDER}.Acquire`, { name: `${loop.diskseq}`, readOnly: true }), loop.diskseq, true, 'after the fuzz');
  t.truthy(fd);
  client.close();
  const fds = await daemon.settleFds(baseline.fds);
  const after = daemon.footprint();
  t.log(`daemon after the fuzz and a valid Acquire: ${describeFootprint(after)} (baseline ${describeFootprint(baseline)})`);
  t.is(fds, baseline.fds, `fd count back at the baseline; open now:\n${daemon.fdTargets().join('\n')}`);
  t.true(after.rssBytes <= baseline.rssBytes + RSS_MARGIN, `RSS ${describeFootprint(after)} vs baseline ${describeFootprint(baseline)}`);
});
