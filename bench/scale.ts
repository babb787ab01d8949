/**
 * Scale benchmarks on a synthetic sysfs tree (thousands of fake disks plus one real loop
 * device linked in): does the open path's cost depend on how many disks exist (the target:
 * the same lookup cost at 10,000 disks as at 10; docs/design.md, "Registry"), and how long
 * does one List of all of them hold up other clients?
 */
import { performance } from 'node:perf_hooks';
import { native } from '../native/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import type { LoopFixture } from '../testkit/loop.js';
import { createSyntheticSysfs } from '../testkit/synthetic-sysfs.js';
import { WireClient } from '../testkit/wire-client.js';
import { roundTrip, type Series } from './open-roundtrip.js';

/** What one synthetic-tree size gave. */
export interface ScaleResult {
  disks: number;
  open: Series;
  /** Milliseconds for one List of every disk. */
  listMs: number;
  /** Milliseconds an open took while that List was being answered. */
  openDuringListMs: number;
}

/** Runs the open round trip (n requests) and a List with `disks` fake disks around `loop`. */
export async function scaleRun(loop: LoopFixture, disks: number, n: number): Promise<ScaleResult> {
  const sysfs = createSyntheticSysfs({ count: disks, linked: [loop.name] });
  let daemon: DaemonProcess | undefined;
  const clients: WireClient[] = [];
  try {
    daemon = await DaemonProcess.start({ sysfsRoot: sysfs.root, logLevel: 'warn' });
    const a = WireClient.connect(daemon.socketPath);
    const b = WireClient.connect(daemon.socketPath);
    clients.push(a, b);
    await roundTrip(a, loop.diskseq, 200);
    const open = await roundTrip(a, loop.diskseq, n);
    open.name = `round trip with ${disks} disks in sysfs`;

    const t0 = performance.now();
    const listing = a.listResponses(false).then(() => performance.now() - t0);
    // Let the List request reach the daemon first, then time an open behind it.
    await new Promise((r) => setTimeout(r, 2));
    const t1 = performance.now();
    const outcome = await b.open({ diskseq: loop.diskseq });
    const openDuringListMs = performance.now() - t1;
    if (outcome.ok) native.close(outcome.fd);
    else throw new Error(`open during list failed: ${outcome.code}`);
    return { disks, open, listMs: await listing, openDuringListMs };
  } finally {
    for (const c of clients) c.close();
    await daemon?.stop();
    sysfs.remove();
  }
}
