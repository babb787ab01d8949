// The README's diskseq-open examples, run as written (as root, against a loop device of
// the test's own, its diskseq in place of 42), and the fd-itself form that
// docs/policy.md gives users whose grant lacks "exclusive".
import test from 'ava';
import { tempDir } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { makeLuks } from '../testkit/preload.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY } from './helpers/peer.js';
import { diskseqOpenArgv, policyDir, runProcess, writePolicy } from './helpers/policy-e2e-support.js';

test('README: head of {}, mkfs.ext4 {} and cryptsetup luksDump {} through diskseq-open work as written', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ sizeMiB: 32, partitionsMiB: [2, 20], partscan: true }, t);
  makeLuks(`/dev/${loop.partitionName(2)}`, tempDir(t), '11111111-2222-3333-4444-555555555555');
  const daemon = await DaemonProcess.start({}, t);
  const env = { ...process.env, DISKSEQD_SOCKET: daemon.socketPath };
  const run = (...args: string[]) => runProcess(diskseqOpenArgv(...args), { env, timeoutMs: 60_000 });
  const n = loop.diskseq.toString();

  const head = await run(`${n}p1`, '--', 'sh', '-c', 'head -c 16 {}');
  t.is(head.code, 0, head.stderr);
  t.is(head.stdout, loop.image.partitions[0]!.marker.slice(0, 16));
  const luks = await run('--wait', '5', `${n}-part2`, '--', 'cryptsetup', 'luksDump', '{}');
  t.is(luks.code, 0, luks.stderr);
  t.regex(luks.stdout, /UUID:\s+11111111-2222-3333-4444-555555555555/);
  const mkfs = await run('--rw', `/dev/disk/by-diskseq/${n}`, '--', 'mkfs.ext4', '{}');
  t.is(mkfs.code, 0, mkfs.stderr);
});

test('docs/policy.md: without an exclusive grant the fd itself (<&3) works where {} cannot', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const policy = writePolicy(`${policyDir(t)}/policy.json`, {
    rules: [{ name: 'nobody-reads', peer: { uids: [NOBODY.uid] }, device: { names: [loop.name] }, access: ['read-only'], loop_devices: true }],
  });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy }, t);
  const env = { ...process.env, DISKSEQD_SOCKET: daemon.socketPath };
  const n = loop.diskseq.toString();
  const viaFd = await runProcess(diskseqOpenArgv(n, '--', 'sh', '-c', 'head -c 16 <&3'), { as: NOBODY, env });
  t.is(viaFd.code, 0, viaFd.stderr);
  t.is(viaFd.stdout, loop.image.diskMarker.slice(0, 16));
  const dd = await runProcess(diskseqOpenArgv(n, '--', 'sh', '-c', 'dd bs=1M status=none <&3 | head -c 16'), { as: NOBODY, env });
  t.is(dd.code, 0, dd.stderr);
  t.is(dd.stdout, loop.image.diskMarker.slice(0, 16));
});
