/**
 * Netlink overrun (docs/design.md, "Registry"): when the kernel drops uevents (ENOBUFS),
 * the registry recovers by rescanning sysfs, and only then. The listener and registry run
 * in this process (src/live-registry.ts, as the daemon runs them) with a 4 KiB receive
 * buffer, so the test can block their event loop while it makes far more uevents than that
 * holds (attach/detach churn and LOOP_CHANGE_FD on its own loop devices), then let them
 * run.
 *
 * A control listener with the same buffer and no rescan on overrun shows that the burst
 * really lost events the registry needed.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readdirSync, readFileSync } from 'node:fs';
import { native } from '../native/index.js';
import { createLogger } from '../src/log.js';
import { startLiveRegistry } from '../src/live-registry.js';
import { Registry } from '../src/registry.js';
import { Sysfs } from '../src/sysfs.js';
import { UeventListener } from '../src/uevents.js';
import { createLoop, readOnlyChangeableLoop, reattachOrReplace } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';

/** A registry fed by its own uevent listener with a tiny receive buffer. */
function liveRegistry(t: ExecutionContext, rescanOnOverrun: boolean) {
  const log = createLogger('silent');
  const state = { overruns: 0 };
  if (rescanOnOverrun) {
    const { registry, uevents: listener } = startLiveRegistry(new Sysfs(), log, {
      ueventBufferBytes: 4096, onOverrun: () => state.overruns++,
    });
    t.teardown(() => listener.close());
    return { registry, listener, state };
  }
  // The control: the same wiring, but an overrun is only counted, never rescanned.
  let registry: Registry | undefined;
  const listener = new UeventListener({
    onEvent: (event) => {
      if (event.action === 'remove' && !event.isPartition) registry?.forget(event.name);
      else registry?.refresh(event.name, event.action === 'change', event.action === 'add' && event.isPartition ? event.name : undefined);
    },
    onOverrun: () => state.overruns++,
  }, log, 4096);
  t.teardown(() => listener.close());
  registry = new Registry(new Sysfs(), log, () => listener.drain());
  registry.scan();
  listener.drain();
  return { registry, listener, state };
}

/** BLKGETDISKSEQ on an fd of the test's own. */
function ownDiskseq(name: string): bigint {
  const fd = openSync(`/dev/${name}`, constants.O_RDONLY);
  try {
    return native.probeFdSync(fd).diskseq!;
  } finally {
    closeSync(fd);
  }
}

/** The registry's view of one loop device and its partitions: "name diskseq partition". */
function registryView(registry: Registry, name: string): string[] {
  const out: string[] = [];
  for (const disk of registry.disks()) {
    if (disk.name !== name) continue;
    out.push(`${disk.name} ${disk.diskseq} 0`);
    for (const part of disk.partitions.values()) out.push(`${part.name} ${disk.diskseq} ${part.partition}`);
  }
  return out.sort();
}

/** sysfs now, for a PARTSCAN loop device of ours (bound): the same shape. */
function sysfsView(name: string): string[] {
  const dir = `/sys/class/block/${name}`;
  const diskseq = readFileSync(`${dir}/diskseq`, 'utf8').trim();
  const partitions = readdirSync(dir).filter((e) => e.startsWith(`${name}p`));
  return [`${name} ${diskseq} 0`, ...partitions.map((p) => `${p} ${diskseq} ${readFileSync(`${dir}/${p}/partition`, 'utf8').trim()}`)].sort();
}

test('after a uevent overrun (ENOBUFS) the registry rescans and equals sysfs again', async (t) => {
  if (!needsRoot(t)) return;
  // Our devices: a filler whose events fill the receive buffers first, a read-only loop
  // for LOOP_CHANGE_FD churn, a PARTSCAN loop for attach/detach churn with partitions.
  const filler = readOnlyChangeableLoop(t);
  const ro = readOnlyChangeableLoop(t);
  let churned = createLoop({ partscan: true, partitionsMiB: [1, 1] }, t);
  const churnedName = churned.name;

  const live = liveRegistry(t, true);
  const control = liveRegistry(t, false);
  const roBefore = ownDiskseq(ro.name);
  t.is(live.registry.find(roBefore)?.name, ro.name, 'indexed before the burst');
  t.deepEqual(registryView(live.registry, churned.name), sysfsView(churned.name), 'equal before the burst');
  const churnedBefore = registryView(control.registry, churned.name);

  // The burst, with the event loop blocked: nobody reads the uevent sockets meanwhile. Any
  // event that survives for a device makes even the control re-read it, so the filler's
  // events come first and fill the buffers; ours after it are lost.
  for (let i = 0; i < 40; i++) filler.changeFd();
  for (let i = 0; i < 40; i++) ro.changeFd();
  for (let i = 0; i < 4; i++) churned = reattachOrReplace(t, churned, { partitionsMiB: i % 2 === 0 ? [1] : [1, 1, 1] });
  execFileSync('partx', ['--delete', '--nr', '2', churned.devPath], { stdio: 'pipe' });
  const roAfter = ownDiskseq(ro.name);
  t.true(roAfter > roBefore + 39n, 'every LOOP_CHANGE_FD took a new diskseq');

  // Let the listeners' pollers run, then make sure nothing is left unread.
  await new Promise((resolve) => setTimeout(resolve, 200));
  live.listener.drain();
  control.listener.drain();

  t.true(control.state.overruns >= 1, 'the control saw the overrun too');
  t.is(control.registry.find(roBefore)?.name, ro.name, 'control: without a rescan the old instance stays indexed');
  if (churned.name === churnedName) {
    t.deepEqual(registryView(control.registry, churnedName), churnedBefore, 'control: the churn went unnoticed');
  } else {
    // Another process attached the old name after our detach: its events came later than
    // the burst and may reach the control. The read-only loop above still shows the loss.
    t.log(`control: ${churnedName} is another process's device now; its view is not compared`);
  }

  t.true(live.state.overruns >= 1, 'ENOBUFS was reported');
  t.is(live.registry.find(roAfter)?.name, ro.name, 'the current instance is indexed');
  t.is(live.registry.find(roBefore), undefined, 'the first instance is gone');
  t.deepEqual(registryView(live.registry, ro.name), [`${ro.name} ${roAfter} 0`], 'exactly one entry for the read-only loop');
  t.deepEqual(registryView(live.registry, churned.name), sysfsView(churned.name), 'the churned loop and its partitions equal sysfs');
  t.is(live.registry.find(churned.diskseq)?.name, churned.name);
});
