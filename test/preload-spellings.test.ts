/**
 * Every spelling of a by-diskseq path is answered by the shim or refused by it, never
 * passed to libc: with a stale udev link /dev/disk/by-diskseq/N -> ../../loopB present,
 * libc would open loopB — another disk — for any spelling that reaches the link. Covered:
 * "." and ".." anywhere in an absolute path, relative paths from a working directory,
 * directory fds (openat), a symlinked directory named by-diskseq, and names the shim does
 * not serve (a leading zero, a diskseq that is gone, a trailing slash).
 *
 * The stale links live in a private mount namespace (unshare --mount): a tmpfs over /dev
 * holding only /dev/null, loopB's node, /dev/shm and /dev/disk/by-diskseq with the links.
 * Nothing outside the namespace sees them; the daemon runs outside, on the real /dev.
 * Each spelling also runs without the shim, showing that libc really reaches loopB there.
 */
import { spawnSync } from 'node:child_process';
import test from 'ava';
import { tempDir } from '../testkit/cleanup.js';
import { claimUnboundLoop, createLoop } from '../testkit/loop.js';
import { buildProbe, majorMinor, startShimDaemon } from '../testkit/preload.js';
import { SHIM_PATH } from '../testkit/repo.js';
import { needsRootAndShim } from './helpers/ci.js';

const ENOENT = 2;
const ENOTDIR = 20;

/** A probe invocation: `open PATH`, `cwd DIR REL` or `at DIR REL` (rdonly). */
type Call = string[];

test('shim: every spelling through a stale by-diskseq link is served or refused, never passed to libc', async (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-spell-');
  const probePath = buildProbe(dir);
  const wanted = createLoop({}, t);
  const other = createLoop({}, t);
  const daemon = await startShimDaemon(t);
  const [major, minor] = majorMinor(other.devPath);
  const N = wanted.diskseq.toString();
  // A diskseq the daemon does not serve: that of an unbound loop device, which we hold
  // O_EXCL so that nobody can attach to it meanwhile.
  const gone = claimUnboundLoop(t).diskseq.toString();
  const hex = (marker: string): string => Buffer.from(marker.slice(0, 16)).toString('hex');
  const wantedHead = hex(wanted.image.diskMarker);
  const otherHead = hex(other.image.diskMarker);

  const setup = [
    'set -e',
    'mount -t tmpfs -o mode=0755 diskseqd-spellings /dev',
    'mknod -m 0666 /dev/null c 1 3',
    `mknod -m 0600 /dev/${other.name} b ${major} ${minor}`,
    'mkdir -p /dev/shm /dev/disk/by-diskseq',
    `ln -s ../../${other.name} /dev/disk/by-diskseq/${N}`,
    `ln -s ../../${other.name} /dev/disk/by-diskseq/0${N}`,
    `ln -s ../../${other.name} /dev/disk/by-diskseq/${gone}`,
    'ln -s ../disk/by-diskseq /dev/shm/by-diskseq',
    'cd /',
  ];
  const served: Call[] = [
    ['open', `/dev/disk/by-diskseq/${N}`],
    ['open', `/dev/shm/../disk/by-diskseq/${N}`],
    ['open', `/dev/disk/by-diskseq/../../shm/../disk/by-diskseq/${N}`],
    ['open', `//dev/./disk//by-diskseq/./${N}`],
    ['open', `/../dev/disk/by-diskseq/../by-diskseq/${N}`],
    ['open', `/dev/shm/by-diskseq/${N}`], // a symlinked directory: same device and inode
    ['cwd', '/dev/disk/by-diskseq', N],
    ['cwd', '/dev/disk', `by-diskseq/${N}`],
    ['cwd', '/dev/shm', `../disk/by-diskseq/${N}`],
    ['cwd', '/dev/disk/by-diskseq', `./../by-diskseq/${N}`],
    ['at', '/dev/disk/by-diskseq', N],
    ['at', '/dev', `disk/by-diskseq/${N}`],
    ['at', '/dev/shm', `../disk/./by-diskseq/${N}`],
    ['at', '-', `dev/disk/by-diskseq/${N}`],
  ];
  const refused: Array<[Call, number]> = [
    [['open', `/dev/disk/by-diskseq/0${N}`], ENOENT],
    [['open', `/dev/shm/../disk/by-diskseq/0${N}`], ENOENT],
    [['open', `/dev/disk/by-diskseq/${gone}`], ENOENT],
    [['open', `/dev/shm/../disk/by-diskseq/${gone}`], ENOENT],
    [['cwd', '/dev/disk/by-diskseq', `0${N}`], ENOENT],
    [['cwd', '/dev/disk/by-diskseq', gone], ENOENT],
    [['at', '/dev/disk/by-diskseq', `0${N}`], ENOENT],
    [['at', '/dev/shm', `../disk/by-diskseq/${gone}`], ENOENT],
    [['open', `/dev/disk/by-diskseq/${N}/`], ENOTDIR],
  ];
  const calls = [...served, ...refused.map(([call]) => call)];
  const script = (shim: boolean): string => [...setup, ...calls.map((call) =>
    `${shim ? `LD_PRELOAD=${SHIM_PATH} DISKSEQD_SOCKET=${daemon.socketPath} ` : ''}${probePath} ${call.map((a) => `'${a}'`).join(' ')} rdonly`)].join('\n');
  const run = (shim: boolean): Array<Record<string, unknown>> => {
    const result = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script(shim)], { encoding: 'utf8', timeout: 60_000 });
    t.is(result.status, 0, `namespace script (shim ${shim}): ${result.stderr}`);
    return result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  };

  const plain = run(false);
  const shimmed = run(true);
  t.is(plain.length, calls.length);
  t.is(shimmed.length, calls.length);
  for (const [i, call] of served.entries()) {
    const what = call.join(' ');
    t.is(plain[i]!.head, otherHead, `without the shim, libc follows the stale link to ${other.name}: ${what}`);
    t.is(shimmed[i]!.errno, 0, `${what}: ${JSON.stringify(shimmed[i])}`);
    t.is(shimmed[i]!.diskseq, N, what);
    t.is(shimmed[i]!.head, wantedHead, `${what} reads disk instance ${N}, not ${other.name}`);
  }
  for (const [j, [call, errno]] of refused.entries()) {
    const i = served.length + j;
    const what = call.join(' ');
    if (errno === ENOENT) t.is(plain[i]!.head, otherHead, `without the shim, libc follows the stale link: ${what}`);
    t.is(shimmed[i]!.fd, -1, `${what}: ${JSON.stringify(shimmed[i])}`);
    t.is(shimmed[i]!.errno, errno, what);
  }
  t.true(daemon.alive);
});
