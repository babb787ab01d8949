/**
 * A REMOVED watch event says what went away: the device as watchers were last told of it
 * (its ADDED, from the snapshot or live, or its last CHANGED) — size, read-only, driver
 * and attributes — not an empty shell, though nothing is left in sysfs to read by then.
 * Real loop devices, a real resize (LOOP_SET_CAPACITY), a real detach.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { truncateSync } from 'node:fs';
import { connect, type DeviceInfo, type WatchEvent } from '../client/index.js';
import { needsRoot } from './helpers/ci.js';
import { within } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { MiB } from '../testkit/image.js';

/** Collects a watch's events in the background; `until` waits for one that matches. */
async function collect(socketPath: string, t: { teardown(fn: () => void): void }) {
  const client = await connect({ socketPath });
  const watch = client.watch();
  t.teardown(() => {
    watch.close();
    client.close();
  });
  const events: WatchEvent[] = [];
  const listeners = new Set<() => void>();
  void (async () => {
    for await (const event of watch) {
      events.push(event);
      for (const listener of [...listeners]) listener();
    }
  })().catch(() => undefined);
  const until = (what: string, match: (e: WatchEvent) => boolean): Promise<WatchEvent> => within(new Promise((resolve) => {
    const check = (): void => {
      const found = events.find(match);
      if (found === undefined) return;
      listeners.delete(check);
      resolve(found);
    };
    listeners.add(check);
    check();
  }), 15_000, what);
  await until('SYNCED', (e) => e.kind === 'synced');
  return { events, until };
}

const isEvent = (kind: string, name: string, diskseq: bigint) => (e: WatchEvent): boolean =>
  e.kind === kind && e.device?.name === name && e.device.diskseq === diskseq;

/** What a REMOVED must repeat of the last description. */
function description(d: DeviceInfo | undefined) {
  return d && { partition: d.partition, major: d.major, minor: d.minor, sizeBytes: d.sizeBytes, readOnly: d.readOnly, driver: d.driver, attributes: d.attributes };
}

test('REMOVED carries the last description sent: ADDED live or in the snapshot, or the last CHANGED', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = await DaemonProcess.start({}, t);
  const early = await collect(daemon.socketPath, t);
  const loop = createLoop({ partscan: true, sizeMiB: 8, partitionsMiB: [2, 2] }, t);
  const names = [loop.name, loop.partitionName(1), loop.partitionName(2)];
  const added = new Map<string, WatchEvent>();
  for (const name of names) added.set(name, await early.until(`ADDED ${name}`, isEvent('added', name, loop.diskseq)));
  const disk = added.get(loop.name)!.device!;
  t.is(disk.sizeBytes, BigInt(8 * MiB));
  t.is(disk.attributes['loop/backing_file'], loop.image.path);
  t.is(added.get(loop.partitionName(2))!.device!.attributes['loop/backing_file'], loop.image.path, 'a partition carries its disk\'s loop/*');

  // A watcher that starts now learns of the devices from its snapshot.
  const late = await collect(daemon.socketPath, t);
  t.truthy(late.events.find(isEvent('added', loop.name, loop.diskseq)), 'in the late snapshot');

  // Grow the disk: CHANGED with the new size, the description REMOVED will repeat.
  truncateSync(loop.image.path, 16 * MiB);
  execFileSync('losetup', ['--set-capacity', loop.devPath]);
  const changed = await early.until(`CHANGED ${loop.name}`, isEvent('changed', loop.name, loop.diskseq));
  t.is(changed.device!.sizeBytes, BigInt(16 * MiB));
  await late.until(`CHANGED ${loop.name} (late watcher)`, isEvent('changed', loop.name, loop.diskseq));

  t.true(loop.detach(), 'detached');
  for (const watcher of [early, late]) {
    for (const name of names) {
      const removed = await watcher.until(`REMOVED ${name}`, isEvent('removed', name, loop.diskseq));
      const last = name === loop.name ? changed : added.get(name)!;
      t.deepEqual(description(removed.device), description(last.device), `REMOVED ${name} repeats its last description`);
      t.not(removed.device!.sizeBytes, 0n);
    }
  }
});
