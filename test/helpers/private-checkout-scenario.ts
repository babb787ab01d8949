/**
 * The unprivileged-peer cases of private-checkout.test.ts, run (as root) from a copy of
 * the built checkout under a 0700 directory, so every path below is the copy's: a peer
 * open through the client library, a tool under the shim, the CLI opening and running
 * COMMAND, and the CLI's --preload, all as uid 65534 against a daemon started from the
 * copy. Prints one JSON line (PrivateCheckoutReport) and cleans up after itself.
 *
 *   node <copy>/dist/test/helpers/private-checkout-scenario.js
 */
import type { TeardownHost } from '../../testkit/cleanup.js';
import { DaemonProcess } from '../../testkit/daemon.js';
import { createLoop } from '../../testkit/loop.js';
import { readableShim, run } from '../../testkit/preload.js';
import { NOBODY, whyUnreachable } from '../../testkit/reachable.js';
import { REPO_ROOT } from '../../testkit/repo.js';
import { runCli } from './cli.js';
import { runPeer, type PeerReport } from './peer.js';

/** What the scenario saw. */
export interface PrivateCheckoutReport {
  repoRoot: string;
  /** Why uid 65534 cannot reach the checkout (undefined would mean it can). */
  unreachable?: string;
  /** uid 65534 reading the checkout's package.json directly: the exit status and stderr. */
  control: { status: number | null; stderr: string };
  /** The disk marker of the loop device, which every case must read. */
  marker: string;
  /** The loop device's kernel name and diskseq. */
  name: string;
  diskseq: string;
  peer: PeerReport;
  shim: { status: number | null; stdout: string; stderr: string };
  cli: { code: number | null; stdout: string; stderr: string };
  cliPreload: { code: number | null; stdout: string; stderr: string };
  /** uid of every open audit line, in order. */
  auditUids: number[];
}

const teardowns: Array<() => void | Promise<void>> = [];
const host: TeardownHost = { teardown: (fn) => teardowns.push(fn) };

async function scenario(): Promise<PrivateCheckoutReport> {
  const control = run('cat', [`${REPO_ROOT}package.json`], { as: NOBODY, shim: false });
  const loop = createLoop({}, host);
  const daemon = await DaemonProcess.start({
    worldAccessible: true,
    policy: { rules: [{ name: 'nobody-reads', peer: { uids: [NOBODY.uid] }, device: { names: [loop.name] }, access: ['read-only'], loop_devices: true }] },
  }, host);
  const socket = daemon.socketPath;
  const marker = loop.image.diskMarker;
  const byDiskseq = `/dev/disk/by-diskseq/${loop.diskseq}`;
  const dd = ['dd', `if=${byDiskseq}`, `bs=${marker.length}`, 'count=1', 'status=none'];

  const peer = await runPeer(NOBODY, { socket, steps: [{ op: 'open', diskseq: loop.diskseq.toString(), readMarkerAt: 0 }] });
  const shim = run(dd[0]!, dd.slice(1), { socket, as: NOBODY });
  const cli = await runCli([loop.diskseq.toString(), '--', 'sh', '-c', `head -c ${marker.length} <&3`], { as: NOBODY, env: { DISKSEQD_SOCKET: socket } });
  const cliPreload = await runCli(['--preload', '--socket', socket, '--', ...dd], {
    as: NOBODY, env: { DISKSEQD_PRELOAD_LIBRARY: readableShim() },
  });
  const opens = await daemon.waitForLog(() => daemon.audits().filter((a) => a.op === 'open').length >= 4, 5000, 'four open audit lines')
    .then(() => daemon.audits().filter((a) => a.op === 'open'));
  return {
    repoRoot: REPO_ROOT, unreachable: whyUnreachable(`${REPO_ROOT}package.json`, NOBODY),
    control: { status: control.status, stderr: control.stderr },
    marker, name: loop.name, diskseq: loop.diskseq.toString(), peer,
    shim: { status: shim.status, stdout: shim.stdout.toString('latin1'), stderr: shim.stderr },
    cli: { code: cli.code, stdout: cli.stdout, stderr: cli.stderr },
    cliPreload: { code: cliPreload.code, stdout: cliPreload.stdout, stderr: cliPreload.stderr },
    auditUids: opens.map((a) => a.peer.uid),
  };
}

try {
  process.stdout.write(`${JSON.stringify(await scenario())}\n`);
} catch (error) {
  process.stderr.write(`private-checkout-scenario: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
} finally {
  for (const fn of teardowns.reverse()) await fn();
}
