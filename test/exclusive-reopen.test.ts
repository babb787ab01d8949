// `exclusive` for unprivileged peers (docs/policy.md, "Exclusive opens and reopening"):
// O_EXCL has no permission bit, so any reopen of a delivered fd through /proc/self/fd/N
// could claim the device and block root's mount, mkfs or cryptsetup. A peer whose grant
// lacks "exclusive" therefore gets an fd whose inode is mode 000 (root-owned): its reopen
// fails EACCES, with or without O_EXCL, and root's exclusive open goes through while the
// peer holds its fd. With "exclusive" in the grant the reopen works with exactly the
// granted access — and can claim the device (root then gets BUSY). diskseq-open says so
// in one line when {} cannot work. Real CLI, real peers (setpriv), real loop devices.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import test, { type ExecutionContext } from 'ava';
import { connect, DiskseqError } from '../client/index.js';
import { native } from '../native/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { within } from '../testkit/cleanup.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY } from './helpers/peer.js';
import { runCli } from './helpers/cli.js';
import { peerArgv } from './helpers/peer.js';
import { policyDir, writePolicy } from './helpers/policy-e2e-support.js';
import { CLI_MODULE } from '../testkit/repo.js';

/** A peer granted read-only with exclusive; NOBODY is granted read-only without. */
const CLAIMER = { uid: 4011, gid: 4011 };

/**
 * Run as the peer under diskseq-open: reopens /proc/self/fd/3 read-only, read-only with
 * O_EXCL (kept open: the claim) and read-write, prints the errno of each (0: it worked),
 * then holds everything until its stdin closes.
 */
const REOPENER = `
import json, os, sys
def attempt(flags):
    try:
        fd = os.open('/proc/self/fd/3', flags)
    except OSError as e:
        return e.errno, None
    return 0, fd
ro, fd1 = attempt(os.O_RDONLY)
excl, fd2 = attempt(os.O_RDONLY | os.O_EXCL)
rw, fd3 = attempt(os.O_RDWR)
print(json.dumps({'ro': ro, 'excl': excl, 'rw': rw}), flush=True)
sys.stdin.read()
`;

async function setup(t: ExecutionContext) {
  const loop = createLoop({}, t);
  const policy = writePolicy(`${policyDir(t)}/policy.json`, {
    rules: [
      { name: 'nobody-reads', peer: { uids: [NOBODY.uid] }, device: { names: [loop.name] }, access: ['read-only'], loop_devices: true },
      { name: 'claimer-reads', peer: { uids: [CLAIMER.uid] }, device: { names: [loop.name] }, access: ['read-only'], exclusive: true, loop_devices: true },
    ],
  });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy }, t);
  return { loop, daemon };
}

/** Starts REOPENER as `who` under diskseq-open; resolves with its errnos and a function that ends it. */
async function startReopener(t: ExecutionContext, who: { uid: number; gid: number }, loop: LoopFixture, socket: string) {
  // Started as root, privileges dropped before the CLI runs: the peer never reads the checkout.
  const argv = peerArgv(who, CLI_MODULE, [loop.diskseq.toString(), '--', '/usr/bin/python3', '-c', REOPENER]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, DISKSEQD_SOCKET: socket } });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const line = await within(new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    void exited.then((code) => reject(new Error(`the peer exited (${code}) before reporting: ${stderr}`)));
  }), 15_000, 'the peer\'s reopen report');
  const end = async (): Promise<number | null> => {
    child.stdin.end();
    return within(exited, 15_000, 'the peer to exit');
  };
  return { errnos: JSON.parse(line) as { ro: number; excl: number; rw: number }, end };
}

/** Root's exclusive open of the loop through the daemon: 'OK' (closed again) or the error code. */
async function rootExclusiveOpen(socket: string, loop: LoopFixture): Promise<string> {
  const client = await connect({ socketPath: socket });
  try {
    const { fd } = await client.open({ diskseq: loop.diskseq, exclusive: true });
    native.close(fd);
    return 'OK';
  } catch (error) {
    if (error instanceof DiskseqError) return error.code;
    throw error;
  } finally {
    client.close();
  }
}

const EACCES = 13;

test('without an exclusive grant the peer cannot reopen its fd (EACCES), so cannot claim it; root\'s exclusive open goes through', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, daemon } = await setup(t);
  const peer = await startReopener(t, NOBODY, loop, daemon.socketPath);
  t.deepEqual(peer.errnos, { ro: EACCES, excl: EACCES, rw: EACCES }, 'every reopen is refused by the kernel');
  // While the peer holds its (non-exclusive) fd, root claims the device.
  t.is(await rootExclusiveOpen(daemon.socketPath, loop), 'OK');
  t.is(await peer.end(), 0);
});

test('with an exclusive grant the peer reopens with exactly the granted access, and its O_EXCL reopen claims the device', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, daemon } = await setup(t);
  const peer = await startReopener(t, CLAIMER, loop, daemon.socketPath);
  t.deepEqual(peer.errnos, { ro: 0, excl: 0, rw: EACCES }, 'read-only reopens work, read-write does not');
  // The claim is real: root's exclusive open is BUSY until the peer lets go.
  t.is(await rootExclusiveOpen(daemon.socketPath, loop), 'BUSY');
  t.is(await peer.end(), 0);
  t.is(await rootExclusiveOpen(daemon.socketPath, loop), 'OK');
});

test('diskseq-open: {} without an exclusive grant fails with one line naming both ways out; the fd itself (<&3) works', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, daemon } = await setup(t);
  const env = { DISKSEQD_SOCKET: daemon.socketPath };
  const marker = loop.image.diskMarker.slice(0, 16);

  const braces = await runCli([loop.diskseq.toString(), '--', 'sh', '-c', 'echo ran; head -c 16 {}'], { as: NOBODY, env });
  t.is(braces.code, 125, braces.stderr);
  t.is(braces.stdout, '', 'COMMAND was not run');
  const lines = braces.stderr.trim().split('\n');
  t.is(lines.length, 1, braces.stderr);
  t.regex(lines[0]!, /^diskseq-open: \d+: \/dev\/fd\/3 cannot be reopened \(EACCES\): .*"exclusive": true.*<&3.*-add-fd/);

  const fd = await runCli([loop.diskseq.toString(), '--', 'sh', '-c', 'head -c 16 <&3'], { as: NOBODY, env });
  t.is(fd.code, 0, fd.stderr);
  t.is(fd.stdout, marker, 'the fd itself reads the disk');

  // With the grant, {} works; and root is never stopped by the check.
  const claimer = await runCli([loop.diskseq.toString(), '--', 'sh', '-c', 'head -c 16 {}'], { as: CLAIMER, env });
  t.is(claimer.code, 0, claimer.stderr);
  t.is(claimer.stdout, marker);
  const root = await runCli([loop.diskseq.toString(), '--', 'sh', '-c', 'head -c 16 {}'], { env });
  t.is(root.code, 0, root.stderr);
  t.is(root.stdout, marker);
});
