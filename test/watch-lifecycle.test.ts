/**
 * Watch (docs/design.md, "Wire contract"): a snapshot of ADDED events, exactly one SYNCED,
 * then live events with the current diskseq — checked against BLKGETDISKSEQ on an fd of the
 * test's own — through attach, BLKPG add, detach, re-attach and LOOP_CHANGE_FD. Identity is
 * the diskseq: a name that gets a new diskseq is REMOVED (old) + ADDED (new); partitions
 * are ADDED/REMOVED with their parent's diskseq and their number.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { native } from '../native/index.js';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { createLoop, deletePartitions, readOnlyChangeableLoop, reattachOrReplace } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

/** One event as the test compares it. */
interface Seen {
  kind: string;
  name: string;
  diskseq: bigint;
  partition: number;
}

const KIND = (k: number | null | undefined): string => (diskseqd.v1.EventKind[k ?? 0] ?? String(k)).replace(/^EVENT_KIND_/, '');

/**
 * A watching connection: its first request is the watch; other requests on the same
 * connection are answered in stream order after every event the daemon sent before them,
 * which makes an open of an absent diskseq (the daemon drains pending uevents first) a
 * barrier.
 */
class Watcher {
  readonly events: Seen[] = [];
  private readonly client: WireClient;
  private readonly listeners = new Set<() => void>();
  failure: string | undefined;

  constructor(path: string) {
    this.client = WireClient.connect(path);
    this.client.watch((response) => {
      if (response.event) {
        const d = response.event.device;
        this.events.push({ kind: KIND(response.event.kind), name: d?.name ?? '', diskseq: BigInt((d?.diskseq ?? 0).toString()), partition: d?.partition ?? 0 });
      } else {
        this.failure = `watch answered ${JSON.stringify(response.toJSON())}`;
      }
      this.notify();
    });
    void this.client.whenClosed().then((reason) => {
      this.failure ??= `watch connection closed (${reason.kind})`;
      this.notify();
    });
  }

  /** Resolves once `done()` holds; rejects after timeoutMs or when the watch fails. */
  until(done: () => boolean, timeoutMs = 10_000, what = 'events'): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (done()) finish(resolve);
        else if (this.failure !== undefined) finish(() => reject(new Error(this.failure)));
      };
      const finish = (then: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        then();
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no ${what} within ${timeoutMs} ms; seen: ${show(this.events.slice(-12))}`))), timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** Opens `absent` on this connection: the daemon drains its pending uevents, then says NOT_FOUND. */
  async barrier(absent: bigint): Promise<string> {
    const outcome = await this.client.open({ diskseq: absent });
    if (!outcome.ok) return outcome.code;
    native.close(outcome.fd);
    return 'OK';
  }

  close(): void {
    this.client.close();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}

function show(events: Seen[]): string {
  return events.map((e) => `${e.kind} ${e.name} ${e.diskseq}${e.partition ? `p${e.partition}` : ''}`).join(', ') || '(none)';
}

/** BLKGETDISKSEQ on an fd of the test's own (not the fixture's) for /dev/<name>. */
function ownDiskseq(name: string): bigint {
  const fd = openSync(`/dev/${name}`, constants.O_RDONLY);
  try {
    const probe = native.probeFdSync(fd);
    if (probe.loopBound !== true || probe.diskseq === null) throw new Error(`/dev/${name} is not a bound loop device`);
    return probe.diskseq;
  } finally {
    closeSync(fd);
  }
}

/** Order-insensitive comparison key (the kernel lists sibling partitions in no fixed order). */
const key = (e: Seen): string => `${e.kind} ${e.name} ${e.diskseq} ${e.partition}`;

test('watch: snapshot, one SYNCED, then attach, partitions, detach, re-attach and a new diskseq under the same name', async (t) => {
  if (!needsRoot(t)) return;
  // A diskseq that is gone for good: the barrier's NOT_FOUND key.
  const sentinel = createLoop({}, t);
  const absent = sentinel.diskseq;
  sentinel.detach();
  const before = createLoop({ partscan: true, partitionsMiB: [2, 2] }, t);
  const { daemon } = await startBroker(t);
  const watcher = new Watcher(daemon.socketPath);
  t.teardown(() => watcher.close());

  // Snapshot: ADDED for every device, then exactly one SYNCED.
  await watcher.until(() => watcher.events.some((e) => e.kind === 'SYNCED'), 10_000, 'SYNCED');
  const synced = watcher.events.findIndex((e) => e.kind === 'SYNCED');
  const snapshot = watcher.events.slice(0, synced);
  t.true(snapshot.length > 0);
  t.deepEqual(snapshot.filter((e) => e.kind !== 'ADDED'), [], 'the snapshot holds only ADDED events');
  const beforeDiskseq = ownDiskseq(before.name);
  for (const [name, partition] of [[before.name, 0], [before.partitionName(1), 1], [before.partitionName(2), 2]] as const) {
    t.true(snapshot.some((e) => e.name === name && e.diskseq === beforeDiskseq && e.partition === partition), `snapshot has ${name}`);
  }

  let consumed = watcher.events.length;
  const mine = new Set<string>();
  const isMine = (e: Seen) => mine.has(e.name);
  /** Waits for exactly `expected` (in any order) among this test's names after the last step. */
  async function step(what: string, expected: Seen[]): Promise<void> {
    // A CHANGED of a device this step expects ADDED says nothing new: the kernel can send
    // more than one uevent for one attach, and under load they are handled apart.
    const news = (e: Seen) => isMine(e) && !(e.kind === 'CHANGED' && expected.some((x) => x.kind === 'ADDED' && x.name === e.name && x.diskseq === e.diskseq));
    t.is(await watcher.barrier(absent), 'NOT_FOUND', `${what}: barrier`);
    await watcher.until(() => watcher.events.slice(consumed).filter(news).length >= expected.length, 10_000, what);
    const got = watcher.events.slice(consumed).filter(news);
    consumed = watcher.events.length;
    t.deepEqual(got.map(key).sort(), expected.map(key).sort(), `${what}: got ${show(got)}`);
  }

  // Attach: ADDED with the diskseq BLKGETDISKSEQ reports on our own fd.
  const loop = createLoop({ partscan: true, partitionsMiB: [2, 2], addPartitions: false }, t);
  for (const n of [loop.name, loop.partitionName(1), loop.partitionName(2)]) mine.add(n);
  const first = ownDiskseq(loop.name);
  t.is(first, loop.diskseq);
  await step('attach', [{ kind: 'ADDED', name: loop.name, diskseq: first, partition: 0 }]);

  // BLKPG add: partitions ADDED with the parent's diskseq and their number.
  execFileSync('partx', ['--add', loop.devPath], { stdio: 'pipe' });
  await step('partx --add', [
    { kind: 'ADDED', name: loop.partitionName(1), diskseq: first, partition: 1 },
    { kind: 'ADDED', name: loop.partitionName(2), diskseq: first, partition: 2 },
  ]);

  // Detach (partitions deleted first): everything REMOVED under the old diskseq.
  deletePartitions(loop.devPath);
  t.true(loop.detach(), 'detached');
  await step('detach', [
    { kind: 'REMOVED', name: loop.partitionName(1), diskseq: first, partition: 1 },
    { kind: 'REMOVED', name: loop.partitionName(2), diskseq: first, partition: 2 },
    { kind: 'REMOVED', name: loop.name, diskseq: first, partition: 0 },
  ]);

  // Re-attach under the same name: a new instance, a new diskseq.
  const again = reattachOrReplace(t, loop, { partitionsMiB: [2], addPartitions: false });
  // Replaced: the old name is someone else's now, and so are its events.
  if (again.name !== loop.name) for (const n of [loop.name, loop.partitionName(1), loop.partitionName(2)]) mine.delete(n);
  for (const n of [again.name, again.partitionName(1)]) mine.add(n);
  const second = ownDiskseq(again.name);
  t.true(second > first);
  execFileSync('partx', ['--add', again.devPath], { stdio: 'pipe' });
  await step('re-attach + partx --add', [
    { kind: 'ADDED', name: again.name, diskseq: second, partition: 0 },
    { kind: 'ADDED', name: again.partitionName(1), diskseq: second, partition: 1 },
  ]);

  // LOOP_CHANGE_FD: the name gets a new diskseq with no unbound moment in between.
  const ro = readOnlyChangeableLoop(t);
  mine.add(ro.name);
  const roFirst = ownDiskseq(ro.name);
  await step('read-only attach', [{ kind: 'ADDED', name: ro.name, diskseq: roFirst, partition: 0 }]);
  ro.changeFd();
  const roSecond = ownDiskseq(ro.name);
  t.true(roSecond > roFirst);
  await step('LOOP_CHANGE_FD', [
    { kind: 'REMOVED', name: ro.name, diskseq: roFirst, partition: 0 },
    { kind: 'ADDED', name: ro.name, diskseq: roSecond, partition: 0 },
  ]);
  const removedAt = watcher.events.findIndex((e) => e.name === ro.name && e.kind === 'REMOVED');
  const addedAt = watcher.events.findIndex((e) => e.name === ro.name && e.kind === 'ADDED' && e.diskseq === roSecond);
  t.true(removedAt < addedAt, 'REMOVED (old) comes before ADDED (new)');

  t.is(watcher.events.filter((e) => e.kind === 'SYNCED').length, 1, 'exactly one SYNCED in the whole stream');
  t.is(watcher.failure, undefined);
});
