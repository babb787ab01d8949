// diskseq-open --list against the real daemon and real loop devices, checked against
// lsblk itself: the same JSON for the same columns (sizes as lsblk prints them, or bytes
// with -b; partitions as children), filters by DEVICE form, kernel name, device path and
// backing file showing the current diskseq, and a kernel name refused as an open DEVICE
// with a message that names the diskseq it has now.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { runCli } from './helpers/cli.js';
import { claimUnboundLoop, createLoop, type LoopFixture } from '../testkit/loop.js';

const COLUMNS = 'NAME,MAJ:MIN,RM,SIZE,RO,TYPE';

function lsblkJSON(loop: LoopFixture, bytes: boolean): unknown {
  return JSON.parse(execFileSync('lsblk', ['-J', ...(bytes ? ['-b'] : []), '-o', COLUMNS, loop.devPath], { encoding: 'utf8' }));
}

test('--list -J for a loop device and its partitions is what lsblk -J prints, with and without -b', async (t) => {
  if (!needsRoot(t)) return;
  // Sizes that exercise lsblk's rounding: 1.5M, 1023.5K and a 1.94M that lsblk shows as 1.9M.
  const loops = [
    createLoop({ sizeMiB: 8, partitionsMiB: [2, 3], partscan: true }, t),
    createLoop({ sizeMiB: 1.5 }, t),
    createLoop({ sizeMiB: 1023.5 / 1024 }, t),
    createLoop({ sizeMiB: (3973 * 512) / (1024 * 1024) }, t),
  ];
  const { daemon } = await startBroker(t);
  for (const bytes of [false, true]) {
    for (const loop of loops) {
      const ours = await runCli(['--socket', daemon.socketPath, '--list', '-J', ...(bytes ? ['-b'] : []), '-o', COLUMNS, loop.name]);
      t.is(ours.code, 0, ours.stderr);
      t.deepEqual(JSON.parse(ours.stdout), lsblkJSON(loop, bytes), `${loop.name}${bytes ? ' -b' : ''}`);
    }
  }
});

test('--list DEVICE... finds a disk by kernel name, device path, backing file or diskseq form, showing its current diskseq', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ sizeMiB: 8, partitionsMiB: [2, 3], partscan: true }, t);
  const other = createLoop({}, t);
  const { daemon } = await startBroker(t);
  const list = (...args: string[]) => runCli(['--socket', daemon.socketPath, '--list', '-n', '-o', 'NAME,DEVICE,BACK-FILE', ...args], { env: { LANG: 'C', LC_ALL: '' } });
  const disk = [`${loop.name} ${loop.diskseq}`, `|-${loop.name}p1 ${loop.diskseq}p1`, `\`-${loop.name}p2 ${loop.diskseq}p2`];

  for (const form of [loop.name, loop.devPath, loop.image.path, `${loop.diskseq}`, `/dev/disk/by-diskseq/${loop.diskseq}`]) {
    const result = await list(form);
    t.is(result.code, 0, `${form}: ${result.stderr}`);
    const lines = result.stdout.trimEnd().split('\n').map((line) => line.replace(/\s+/g, ' ').trim());
    t.deepEqual(lines, [`${disk[0]} ${loop.image.path}`, disk[1], disk[2]], form);
  }
  // A partition alone; two arguments in their order; the same device twice shown once.
  const part = await list(`${loop.name}p2`, other.name, `${loop.diskseq}p2`);
  t.is(part.code, 0, part.stderr);
  t.deepEqual(part.stdout.trimEnd().split('\n').map((line) => line.replace(/\s+/g, ' ').trim()),
    [`${loop.name}p2 ${loop.diskseq}p2`, `${other.name} ${other.diskseq} ${other.image.path}`]);

  // After a re-attach, the same name and file show the new diskseq.
  const old = loop.diskseq;
  loop.reattach({ sizeMiB: 8 });
  const now = await list(loop.name);
  t.not(loop.diskseq, old);
  t.is(now.stdout.replace(/\s+/g, ' ').trim(), `${loop.name} ${loop.diskseq} ${loop.image.path}`);

  // What matches nothing is named on stderr and makes the status 1; the rest is still printed.
  const missing = await list('sdzz', `${old}`, other.name);
  t.is(missing.code, 1);
  t.regex(missing.stderr, new RegExp(`^diskseq-open: sdzz: no such device [^\\n]*\\ndiskseq-open: ${old}: no such disk instance [^\\n]*\\n$`));
  t.is(missing.stdout.replace(/\s+/g, ' ').trim(), `${other.name} ${other.diskseq} ${other.image.path}`);
});

test('a kernel name or /dev path as the DEVICE to open: refused with exit 125, naming its current diskseq', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ sizeMiB: 8, partitionsMiB: [2], partscan: true }, t);
  const unbound = claimUnboundLoop(t);
  const { daemon } = await startBroker(t);
  const open = (device: string) => runCli(['--socket', daemon.socketPath, device, '--', 'true']);
  for (const [device, now] of [[loop.name, `${loop.diskseq}`], [loop.devPath, `${loop.diskseq}`], [`/dev/${loop.name}p1`, `${loop.diskseq}p1`]] as const) {
    const result = await open(device);
    t.is(result.code, 125, device);
    t.is(result.stderr, `diskseq-open: invalid DEVICE ${JSON.stringify(device)}: a kernel name stands for whichever disk has it, ` +
      `not one disk instance; ${device.replace('/dev/', '')} is ${now} now: pass ${now} (see diskseq-open --help)\n`);
  }
  const result = await open(unbound.name);
  t.is(result.code, 125);
  t.regex(result.stderr, new RegExp(`; ${unbound.name} is an unbound loop device now \\(no disk instance to open\\)`));
  const nothing = await open('sdzz');
  t.is(nothing.code, 125);
  t.regex(nothing.stderr, /^diskseq-open: invalid DEVICE "sdzz": expected N, NpM/);
});
