/**
 * Partitions carried over into a PARTSCAN instance are never served, whatever the daemon
 * forgets (docs/design.md, "Registry", invariant 4). The sequence, exactly: attach image A
 * without LO_FLAGS_PARTSCAN, `partx --add`, detach (the partitions survive), hold one stale
 * partition open, attach image B with PARTSCAN — the kernel's rescan fails with EBUSY and
 * A's partitions carry over under B's diskseq, A's offsets over B's bytes. A daemon
 * restart in the middle (between the hold and B's attach), another one after, and a full
 * rescan as after a uevent overrun must never serve (B,1) or (B,2); a partition really
 * added to B is served throughout. A daemon that has lost the provenance file serves them:
 * that is the limit docs/design.md states (a partition nobody saw being added is served).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { native } from '../native/index.js';
import { createLogger } from '../src/log.js';
import { startLiveRegistry } from '../src/live-registry.js';
import { PartitionProvenance } from '../src/partition-provenance.js';
import { Registry } from '../src/registry.js';
import { Sysfs } from '../src/sysfs.js';
import { tempDir } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createImage, readMarker } from '../testkit/image.js';
import { claimLoopDevice, removeCreatedLoop } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';
import { needsRoot } from './helpers/ci.js';

/** What sysfs says partition `name` is now: its DISKSEQ, or null when it does not exist. */
function partitionDiskseq(name: string): bigint | null {
  try {
    const match = /^DISKSEQ=(\d+)$/m.exec(readFileSync(`/sys/class/block/${name}/uevent`, 'utf8'));
    return match ? BigInt(match[1]!) : null;
  } catch {
    return null;
  }
}

function partx(...args: string[]): void {
  execFileSync('partx', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** One answer of a daemon for (diskseq, partition): 'OK' (fd closed again) or the code. */
async function openCode(socket: string, diskseq: bigint, partition: number, waitMs = 0): Promise<string> {
  const client = WireClient.connect(socket);
  try {
    const outcome = await client.open({ diskseq, partition, waitMs });
    if (outcome.ok) native.close(outcome.fd);
    return outcome.ok ? 'OK' : outcome.code;
  } finally {
    client.close();
  }
}

/**
 * A loop device of the test's own taken through the sequence up to B's attach: returns its
 * name, B's diskseq and layout. `betweenHoldAndAttach` runs with the stale partition held
 * and the device unbound (the restart in the middle). Cleans up in teardown: the held fd,
 * every partition (BLKPG), the binding, the images.
 */
async function carryOver(t: ExecutionContext, beforeDetach: () => Promise<void>, betweenHoldAndAttach: () => Promise<void>) {
  const dir = tempDir(t, 'diskseqd-provenance-');
  const imageA = createImage(join(dir, 'a.img'), { sizeMiB: 8, partitionsMiB: [2, 2] });
  const imageB = createImage(join(dir, 'b.img'), { sizeMiB: 16, partitionsMiB: [3, 3, 3] });
  const { LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN } = native.constants;
  const claimed = claimLoopDevice();
  const name = `loop${claimed.index}`;
  const dev = `/dev/${name}`;
  let fd = claimed.fd;
  let held = -1;
  t.teardown(() => {
    if (held >= 0) closeSync(held);
    try {
      partx('--delete', dev); // the stale partitions must not outlive the test
    } catch {
      // none left
    }
    try {
      native.loopClear(fd);
    } catch {
      // unbound already
    }
    native.close(fd);
    if (claimed.created) removeCreatedLoop(claimed.index);
  });
  const attach = (path: string, flags: number): bigint => {
    const backing = openSync(path, 'r+');
    try {
      native.loopConfigure(fd, backing, flags, 0, 0);
    } finally {
      closeSync(backing);
    }
    return native.probeFdSync(fd).diskseq!;
  };

  const diskseqA = attach(imageA.path, LO_FLAGS_AUTOCLEAR);
  partx('--add', dev);
  await beforeDetach();
  // Detach for real (the last close), then claim the device again at once, O_EXCL, so that
  // nobody attaches to it while its stale partitions exist.
  native.loopClear(fd);
  native.close(fd);
  fd = openSync(dev, constants.O_RDWR | constants.O_EXCL);
  if (native.probeFdSync(fd).loopBound !== false) throw new Error(`${name}: bound by someone else after the detach`);
  t.not(partitionDiskseq(`${name}p1`), null, 'without PARTSCAN, the partitions survive the detach');
  held = openSync(`/dev/${name}p1`, constants.O_RDONLY);
  await betweenHoldAndAttach();
  const diskseqB = attach(imageB.path, LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN);
  // The precondition: the rescan failed (p1 is open) and A's partitions now claim B.
  t.is(partitionDiskseq(`${name}p1`), diskseqB, `${name}p1 carried over into instance ${diskseqB} (was ${diskseqA})`);
  t.is(partitionDiskseq(`${name}p2`), diskseqB, `${name}p2 carried over`);
  t.is(partitionDiskseq(`${name}p3`), null, 'B\'s own third partition does not exist yet');
  return { name, dev, diskseqA, diskseqB, imageB };
}

test('carried-over partitions are never served: live, across restarts in the middle and after, and after a full rescan', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(120_000);
  const runtimeDir = join(tempDir(t, 'diskseqd-provenance-run-'), 'run');
  const start = (): Promise<DaemonProcess> => DaemonProcess.start({ runtimeDir }, t);
  let daemon = await start();
  // The registry as the daemon runs it, in this process, watching the whole sequence: for
  // the full rescan that follows a uevent overrun (what onOverrun runs).
  const log = createLogger('silent');
  const live = startLiveRegistry(new Sysfs(), log, { ueventBufferBytes: 4 * 1024 * 1024 });
  t.teardown(() => live.uevents.close());

  const disk = await carryOver(t, async () => {
    // This daemon handles A's partition adds (sent before partx returned) before it goes:
    // a List is answered only after the pending uevents.
    const client = WireClient.connect(daemon.socketPath);
    await client.list(true);
    client.close();
  }, async () => {
    await daemon.stop();
    daemon = await start(); // the restart in the middle
    // Its first scan ends while the loop is unbound: /proc/partitions then lists none of
    // the carried-over partitions, and the scan must not forget what it did not see.
    await daemon.waitForLog((line) => line.msg === 'sysfs scanned', 30_000, 'the first scan');
  });
  const { name, diskseqB } = disk;

  // The daemon that ran while B was attached: the live path.
  t.is(await openCode(daemon.socketPath, diskseqB, 0), 'OK', 'B itself is served');
  t.is(await openCode(daemon.socketPath, diskseqB, 1), 'NOT_FOUND', '(B,1) carried over: not served live');
  t.is(await openCode(daemon.socketPath, diskseqB, 2), 'NOT_FOUND', '(B,2) carried over: not served live');
  // A partition really added to B is served (so the refusals above can fail).
  partx('--add', '--nr', '3', disk.dev);
  t.is(await openCode(daemon.socketPath, diskseqB, 3, 5000), 'OK', '(B,3), added to B, is served');

  // A restart after it all: the full scan at start admits by the same rule.
  await daemon.stop();
  daemon = await start();
  t.is(await openCode(daemon.socketPath, diskseqB, 1), 'NOT_FOUND', '(B,1) after a restart');
  t.is(await openCode(daemon.socketPath, diskseqB, 2), 'NOT_FOUND', '(B,2) after a restart');
  t.is(await openCode(daemon.socketPath, diskseqB, 3), 'OK', '(B,3) after a restart');
  const client = WireClient.connect(daemon.socketPath);
  t.teardown(() => client.close());
  const listed = (await client.list(true)).filter((d) => d.diskseq === diskseqB).map((d) => d.partition).sort();
  t.deepEqual(listed, [0, 3], 'List shows B and its own partition only');

  // The in-process registry, live and after the full rescan an overrun causes.
  live.registry.handlePendingUevents();
  const partitionsOf = (registry: Registry): number[] => [...(registry.find(diskseqB)?.partitions.keys() ?? [])].sort();
  t.deepEqual(partitionsOf(live.registry), [3], 'live: only B\'s own partition');
  live.registry.scan();
  t.deepEqual(partitionsOf(live.registry), [3], 'after a full rescan, with what was learned kept in memory');

  // The limit: whoever lost every record (a fresh registry, or a daemon whose provenance
  // file is gone) cannot tell, and serves what sysfs lists. This is the bug the records fix.
  const forgetful = new Registry(new Sysfs(), log, () => undefined, PartitionProvenance.inMemory());
  forgetful.scan();
  t.deepEqual(partitionsOf(forgetful), [1, 2, 3], 'without provenance the carried-over partitions would be served');
  const amnesiac = await DaemonProcess.start({}, t);
  t.is(await openCode(amnesiac.socketPath, diskseqB, 1), 'OK', 'a daemon without the file serves (B,1): the stated limit');
  t.log(`${name}: A=${disk.diskseqA}, B=${diskseqB}; (B,1) and (B,2) refused live, after two restarts and a rescan`);
});

test('partitions added while a daemon runs are served after it restarts, with its provenance file', async (t) => {
  if (!needsRoot(t)) return;
  const runtimeDir = join(tempDir(t, 'diskseqd-provenance-run-'), 'run');
  let daemon = await DaemonProcess.start({ runtimeDir }, t);
  const dir = tempDir(t, 'diskseqd-provenance-');
  const image = createImage(join(dir, 'p.img'), { sizeMiB: 8, partitionsMiB: [2, 2] });
  const { fd, index, created } = claimLoopDevice();
  const dev = `/dev/loop${index}`;
  t.teardown(() => {
    try {
      partx('--delete', dev);
    } finally {
      try {
        native.loopClear(fd);
      } catch {
        // unbound already
      }
      native.close(fd);
      if (created) removeCreatedLoop(index);
    }
  });
  const backing = openSync(image.path, 'r+');
  native.loopConfigure(fd, backing, native.constants.LO_FLAGS_AUTOCLEAR | native.constants.LO_FLAGS_PARTSCAN, 0, 0);
  closeSync(backing);
  const diskseq = native.probeFdSync(fd).diskseq!;
  partx('--add', dev);
  t.is(await openCode(daemon.socketPath, diskseq, 2, 5000), 'OK');
  await daemon.stop();
  daemon = await DaemonProcess.start({ runtimeDir }, t);
  for (const partition of [1, 2]) {
    const client = WireClient.connect(daemon.socketPath);
    const outcome = await client.open({ diskseq, partition });
    client.close();
    t.true(outcome.ok, `(${diskseq},${partition}) after the restart`);
    if (outcome.ok) {
      t.is(readMarker(outcome.fd, 0), image.partitions[partition - 1]!.marker);
      native.close(outcome.fd);
    }
  }
});
