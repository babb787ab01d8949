// Bursts of Lists (docs/design.md, "Limits: fair turns"): the List and Watch work a uid has
// in progress is bounded (--max-snapshots-per-uid; more wait their turn), and snapshots run
// in fair turns, so an open issued during a burst of 3,200 Lists is answered long before
// the burst's last List. No timed assertion: the order in which the daemon finished the
// requests (its audit lines, written as each one ends) is the evidence.
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { needsRoot } from './helpers/ci.js';
import { checkValidOpen, u64 } from './helpers/hostile-requests.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { encodeRequest } from '../testkit/fuzz-packets.js';
import { createLoop } from '../testkit/loop.js';
import { RawClient } from '../testkit/raw-client.js';
import { createSyntheticSysfs } from '../testkit/synthetic-sysfs.js';

const LIST_PAIR = fileURLToPath(new URL('./helpers/hostile-list-pair.js', import.meta.url));

/** Runs the List pair as uid 65534 against `socketPath`; the ids of the packets in arrival order. */
function listPair(socketPath: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LIST_PAIR, socketPath, '65534'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(out.trim().split('\n').pop() ?? '') as { order: number[] }).order);
      } catch {
        reject(new Error(`the List pair exited ${code} without a result; stderr: ${err}`));
      }
    });
  });
}

/** Whether any packet of List 2 came before the last packet of List 1. */
const interleaved = (order: number[]): boolean => order.indexOf(2) < order.lastIndexOf(1);

test('a uid has at most --max-snapshots-per-uid Lists in progress: with 1, its two Lists come one after the other', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(120_000);
  // Lists of several packets each (about 400 devices fit in one).
  const tree = createSyntheticSysfs({ count: 3000, partitionsEvery: 100 }, t);
  for (const [perUid, expectInterleaved] of [[1, false], [2, true]] as const) {
    const daemon = await DaemonProcess.start({ sysfsRoot: tree.root, logLevel: 'warn', worldAccessible: true, extraArgs: ['--max-snapshots-per-uid', String(perUid)] }, t);
    const order = await listPair(daemon.socketPath);
    t.log(`--max-snapshots-per-uid ${perUid}: packets in the order ${order.join(' ')}`);
    t.true(order.filter((id) => id === 1).length >= 5 && order.filter((id) => id === 2).length >= 5, 'Lists of several packets');
    t.is(interleaved(order), expectInterleaved, expectInterleaved
      ? 'with 2 allowed, both are in progress at once and take turns (the assertion above can fail)'
      : 'with 1 allowed, List 2 waits until List 1 is complete');
    await daemon.stop();
  }
});

test('an open issued during a burst of 200 connections x 16 Lists is answered before the burst\'s last List', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(120_000);
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({}, t);
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'warm-up open');
  const baseline = await daemon.stableFdCount();
  const clients: RawClient[] = [];
  t.teardown(() => clients.forEach((c) => c.close()));
  for (let i = 0; i < 200; i++) clients.push(new RawClient(daemon.socketPath));
  for (const client of clients) {
    for (let j = 1; j <= 16; j++) await client.send(encodeRequest({ id: u64(j), list: { includePartitions: true } }));
    // Let this process read the daemon's log now and then: a daemon whose stdout pipe is
    // full stops until someone reads it.
    await new Promise((resolve) => setImmediate(resolve));
  }
  // Issued once every List has been sent: without fair turns it was answered after all of them.
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined, 'the open during the burst delivers the right device');
  await daemon.waitForCount('audit', 2 + 200 * 16, 60_000);
  const audits = daemon.audits();
  // The second open (the first was the warm-up): where it finished among the Lists.
  const opens = audits.flatMap((a, i) => (a.op === 'open' ? [i] : []));
  t.is(opens.length, 2);
  const open = opens[1]!;
  const lists = audits.filter((a) => a.op === 'list');
  t.is(lists.length, 3200);
  t.true(lists.every((a) => a.code === 'OK'), 'every List was answered');
  const after = lists.filter((a) => audits.indexOf(a) > open).length;
  t.log(`the open finished with ${after} of the 3200 Lists still to finish`);
  t.true(after > 0, 'the open was answered before the last List');
  for (const client of clients) client.close();
  t.is(await daemon.settleFds(baseline), baseline, 'every connection of the burst is gone');
});
