// One user cannot take the wait or watch pools from the others (docs/design.md, "Limits"):
// a client that dies while its reading is paused frees its waits at once; only a peer some
// allow rule's peer part matches may wait at all; waits and watchers have per-uid shares,
// and non-root users together never take root's share. Peers run as real other uids.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type Long from 'long';
import { needsRoot } from './helpers/ci.js';
import { ask, outcomeOf, readAnswer, u64 } from './helpers/hostile-requests.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest, highestDiskseqNow } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';

const HOLDER = fileURLToPath(new URL('./helpers/hostile-holder.js', import.meta.url));
/** A diskseq no device will have during the test: an open of it waits its whole wait_ms. */
const absent = (): Long => u64(highestDiskseqNow() + 1_000_000_000n);

/** Holders started by a test, to be ended before it counts the daemon's fds. */
const holders = new Map<ExecutionContext, ChildProcess[]>();

/** Ends every holder `t` started (they close their connections as they exit). */
async function endHolders(t: ExecutionContext): Promise<void> {
  for (const child of holders.get(t) ?? []) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, 'exit');
    child.stdin!.write('exit\n');
    await exited;
  }
}

/** Runs the holder as `uid`; resolves with its outcomes once it has them; it holds on until endHolders or teardown. */
async function hold(t: ExecutionContext, socketPath: string, uid: number, mode: 'waits' | 'watches', count: number, diskseq?: Long): Promise<string[]> {
  const args = [HOLDER, socketPath, String(uid), mode, String(count), ...(diskseq ? [diskseq.toString()] : [])];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  holders.set(t, [...(holders.get(t) ?? []), child]);
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(child, 'exit');
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`holder as uid ${uid} printed nothing in 30 s; stderr: ${stderr}`)), 30_000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`holder as uid ${uid} exited with ${code}; stderr: ${stderr}`)));
  });
  return (JSON.parse(line) as { outcomes: string[] }).outcomes;
}

/** How many times each outcome occurs. */
function tally(outcomes: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
  return counts;
}

/** A root client's wait with a short wait_ms: TIMEOUT when it was allowed to wait, else the refusal. */
async function rootShortWait(client: RawClient, diskseq: Long): Promise<string> {
  return outcomeOf((await ask(client, { id: u64(9999), open: { diskseq, waitMs: 1 } })).response);
}

/** Policy: uids 65532-65534 may open loop devices read-only (so they may wait); 65531 has no rule. */
const GRANTED = [65534, 65533, 65532];
const NO_GRANT = 65531;
const policy = { rules: [{ name: 'readers', peer: { uids: GRANTED }, device: { drivers: ['loop'] }, access: ['read-only'], loop_devices: true }] };

test('256 clients that die with 16 waits each, their reading paused, free their slots at once', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  const baseline = await daemon.stableFdCount();
  const diskseq = absent();
  const clients: RawClient[] = [];
  t.teardown(() => clients.forEach((c) => c.close()));
  for (let i = 0; i < 256; i++) {
    const client = new RawClient(daemon.socketPath);
    clients.push(client);
    for (let j = 1; j <= 16; j++) await client.send(encodeRequest({ id: u64(j), open: { diskseq, waitMs: 600_000 } }));
  }
  // 4096 waits fill --max-waiting. Probe only once the daemon has read them all (its status
  // counts them): it orders nothing between connections, and a probe read before a client's
  // last waits would take a slot and leave one of them refused.
  const probe = new RawClient(daemon.socketPath);
  t.teardown(() => probe.close());
  const waiting = async (): Promise<number> => (await ask(probe, { id: u64(9998), status: {} })).response.status?.waiting ?? -1;
  let parked = await waiting();
  for (let tries = 0; parked < 4096 && tries < 400; tries++) {
    await new Promise((r) => setTimeout(r, 25));
    parked = await waiting();
  }
  t.is(parked, 4096, 'the daemon has read every wait');
  t.is(await rootShortWait(probe, diskseq), 'RESOURCE_EXHAUSTED', 'the 256 x 16 waits fill the pool');
  t.log(`with 256 waiting clients: ${describeFootprint(daemon.footprint())}`);

  for (const client of clients) client.close(); // each has 16 requests in flight: its reading is paused
  // Noticed at once, not when the 600 s waits end: the sockets are closed, the waits cancelled.
  t.is(await daemon.settleFds(baseline + 1), baseline + 1, `only the probe is left:\n${daemon.fdTargets().slice(0, 20).join('\n')}`);
  t.is(await daemon.waitForCount('audit', 4096, 10_000) >= 4096, true, 'every wait ended (audited as cancelled)');
  t.is(await rootShortWait(probe, diskseq), 'TIMEOUT', 'the pool is free again: a wait is accepted');
  probe.close();
  t.is(await daemon.settleFds(baseline), baseline);
});

test('only a peer some allow rule matches may wait; waits have per-uid shares and root keeps its share', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  // 32 waits in all, 12 per non-root uid, 25% (8) kept for root: non-root uids get 24.
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy, extraArgs: ['--max-waiting', '32', '--max-waiting-per-uid', '12'] }, t);
  const baseline = await daemon.stableFdCount();
  const diskseq = absent();
  t.deepEqual(tally(await hold(t, daemon.socketPath, NO_GRANT, 'waits', 14, diskseq)), { PERMISSION_DENIED: 14 },
    `uid ${NO_GRANT}, which no rule could allow a device, may not wait at all`);
  t.deepEqual(tally(await hold(t, daemon.socketPath, GRANTED[0]!, 'waits', 14, diskseq)), { waiting: 12, RESOURCE_EXHAUSTED: 2 },
    'a granted uid waits up to its share');
  t.deepEqual(tally(await hold(t, daemon.socketPath, GRANTED[1]!, 'waits', 14, diskseq)), { waiting: 12, RESOURCE_EXHAUSTED: 2 },
    'so does another');
  t.deepEqual(tally(await hold(t, daemon.socketPath, GRANTED[2]!, 'waits', 2, diskseq)), { RESOURCE_EXHAUSTED: 2 },
    'a third finds the non-root share (24) used up');
  // Root: its 8 are there, whatever the others did.
  const root = new RawClient(daemon.socketPath);
  t.teardown(() => root.close());
  for (let i = 1; i <= 8; i++) await root.send(encodeRequest({ id: u64(i), open: { diskseq, waitMs: 600_000 } }));
  t.is(await rootShortWait(root, diskseq), 'RESOURCE_EXHAUSTED', 'root\'s 9th finds all 32 taken');
  t.false(root.isEnded);
  // Audit lines reach us through a pipe: wait for the one of root's refusal, then count.
  await daemon.waitForLog((l) => l.msg === 'audit' && (l as { peer?: { uid: number } }).peer?.uid === 0 && l.code === 'RESOURCE_EXHAUSTED');
  t.truthy(daemon.audits().find((a) => a.peer.uid === GRANTED[2] && a.code === 'RESOURCE_EXHAUSTED'), 'the refusals are audited');
  t.deepEqual(daemon.audits().filter((a) => a.peer.uid === 0 && a.code === 'RESOURCE_EXHAUSTED').map((a) => a.id), ['9999'], 'root was refused only its 9th');
  await endHolders(t);
  root.close();
  t.is(await daemon.settleFds(baseline), baseline, `every holder gone: ${daemon.fdTargets().join('\n')}`);
  const again = new RawClient(daemon.socketPath);
  t.teardown(() => again.close());
  t.is(await rootShortWait(again, diskseq), 'TIMEOUT', 'their waits ended with them');
});

test('watchers have per-uid shares and root keeps its share', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  // 8 watchers in all, 3 per non-root uid, 2 kept for root: non-root uids get 6.
  const daemon = await DaemonProcess.start({ worldAccessible: true, capture: 'counts', extraArgs: ['--max-watchers', '8', '--max-watchers-per-uid', '3'] }, t);
  const before = await daemon.stableFdCount();
  t.deepEqual(await hold(t, daemon.socketPath, 65534, 'watches', 4), ['synced', 'synced', 'synced', 'RESOURCE_EXHAUSTED']);
  t.deepEqual(await hold(t, daemon.socketPath, 65533, 'watches', 4), ['synced', 'synced', 'synced', 'RESOURCE_EXHAUSTED']);
  t.deepEqual(await hold(t, daemon.socketPath, 65532, 'watches', 1), ['RESOURCE_EXHAUSTED'], 'the non-root share (6) is used up');
  const rootWatchers: RawClient[] = [];
  const watch = async (): Promise<string> => {
    const client = new RawClient(daemon.socketPath);
    rootWatchers.push(client);
    t.teardown(() => client.close());
    await client.send(encodeRequest({ id: u64(7), watch: {} }));
    for (;;) {
      const { response } = await readAnswer(client);
      if (response.body === 'error') return outcomeOf(response);
      if (response.body === 'event' && response.event?.kind === 4) return 'synced';
    }
  };
  t.deepEqual([await watch(), await watch(), await watch()], ['synced', 'synced', 'RESOURCE_EXHAUSTED'], 'root gets its 2, then all 8 are taken');
  await endHolders(t);
  for (const client of rootWatchers) client.close();
  t.is(await daemon.settleFds(before), before, `every watcher gone: ${daemon.fdTargets().join('\n')}`);
  t.deepEqual(await hold(t, daemon.socketPath, 65532, 'watches', 1), ['synced'], 'their slots are free again');
});
