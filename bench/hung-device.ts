/**
 * Root's opens while another device hangs (docs/design.md, "Hung devices"): the C client's
 * sequential opens of a healthy loop, measured before, during and after a hang of another
 * loop (testkit/hung-loop.ts) that has six opens stuck in the daemon — same daemon, same
 * run. The figure is the ratio of the latency during the hang to the latency around it.
 */
import { spawnSync } from 'node:child_process';
import { DaemonProcess } from '../testkit/daemon.js';
import { createHungLoop } from '../testkit/hung-loop.js';
import type { LoopFixture } from '../testkit/loop.js';
import { WireClient } from '../testkit/wire-client.js';
import { native } from '../native/index.js';
import type { ClientRun } from './broker-compare.js';
import type { CPrograms } from './c-programs.js';

/** The C client's figures around and during the hang. */
export interface HungDeviceResult {
  before: ClientRun;
  during: ClientRun;
  after: ClientRun;
}

function runClient(programs: CPrograms, socket: string, diskseq: bigint, opens: number): ClientRun {
  const run = spawnSync(programs.client, [socket, diskseq.toString(), '1', String(opens)], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`c-client failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as ClientRun;
}

/** Runs the three series (see the module comment); `healthy` is the loop root opens. */
export async function hungDeviceRun(programs: CPrograms, healthy: LoopFixture, opens: number, logLevel: string): Promise<HungDeviceResult> {
  const hung = createHungLoop();
  let daemon: DaemonProcess | undefined;
  const client: WireClient[] = [];
  try {
    const diskseq = await hung.attach();
    daemon = await DaemonProcess.start({ logLevel, capture: 'file' });
    const wire = WireClient.connect(daemon.socketPath);
    client.push(wire);
    for (let i = 0; ; i++) { // the daemon learns of the new instance by a uevent
      const outcome = await wire.open({ diskseq });
      if (outcome.ok) {
        native.close(outcome.fd);
        break;
      }
      if (i > 200) throw new Error(`the daemon never served ${hung.name}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const before = runClient(programs, daemon.socketPath, healthy.diskseq, opens);
    await hung.hang();
    const stuck = Array.from({ length: 6 }, () => wire.open({ diskseq }).catch(() => undefined));
    await daemon.waitForLog((line) => line.msg === 'device does not answer: its further work waits until it does', 10_000, 'the stall');
    const during = runClient(programs, daemon.socketPath, healthy.diskseq, opens);
    await hung.release();
    for (const outcome of await Promise.all(stuck)) if (outcome?.ok) native.close(outcome.fd);
    const after = runClient(programs, daemon.socketPath, healthy.diskseq, opens);
    return { before, during, after };
  } finally {
    for (const c of client) c.close();
    await daemon?.stop();
    await hung.cleanup();
  }
}
