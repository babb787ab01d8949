/**
 * What a program sees through the shim for /dev/disk/by-diskseq/ paths, checked against
 * the kernel's own answers for the device node: the stat family, access, readlink and
 * realpath; open flag semantics; strict name parsing; failing closed (docs/preload.md).
 */
import test from 'ava';
import { closeSync, constants, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildProbe, createTestDisk, head, majorMinor, partitionMarker, probe, startShimDaemon,
} from '../testkit/preload.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRootAndShim } from './helpers/ci.js';

const O_ACCMODE = 3; // not in fs.constants
const STAT_KEYS = ['stat', 'lstat', 'stat64', 'fstatat', 'statx', 'xstat', 'lxstat', 'fxstatat', 'xstat64'];

test('stat, lstat, statx, access, readlink and realpath describe the verified device, never a link', async (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-sem-');
  const probePath = buildProbe(dir);
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const opts = { socket: daemon.socketPath };
  const node = statSync(disk.partPath(1));

  for (const spelling of [`${disk.diskseq}-part1`, `${disk.diskseq}p1`]) {
    const path = `/dev/disk/by-diskseq/${spelling}`;
    const seen = probe(probePath, ['inspect', path], opts);
    // The kernel's answers for the node itself, without the shim.
    const kernel = probe(probePath, ['inspect', disk.partPath(1)], { shim: false });
    for (const key of STAT_KEYS) {
      t.deepEqual(seen[key], { errno: 0, mode: node.mode, rdev: majorMinor(disk.partPath(1)) }, `${key} of ${path}`);
      t.deepEqual(seen[key], kernel[key], key);
    }
    t.true((node.mode & constants.S_IFMT) === constants.S_IFBLK);
    const canonical = `/dev/disk/by-diskseq/${disk.diskseq}-part1`;
    for (const key of ['realpath', 'realpathBuf', 'realpathChk', 'canonicalize']) t.is(seen[key], canonical, key);
    t.is(kernel.realpath, disk.partPath(1));
    // Everything else equals what the node itself gives: readlink EINVAL (not a link),
    // access, errno left alone on success, lowest fd, close-on-exec, O_CREAT|O_EXCL,
    // O_DIRECTORY, fopen, no leaked fds or sockets.
    const strip = (o: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(
      Object.entries(o).filter(([k]) => !['realpath', 'realpathBuf', 'realpathChk', 'canonicalize'].includes(k)));
    t.deepEqual(strip(seen), strip(kernel));
    t.is(seen.readlink, 22);
    t.is(seen.accessX, 13);
    t.is(seen.errnoAfterOpen, 4321);
    t.is(seen.lowestFd, 0);
    t.is(seen.creatExcl, 17);
    t.is(seen.directory, 20);
    t.is(seen.fopenHead, head(disk.partPath(1), 16).toString('hex'));
    t.is(seen.freopenHead, head(disk.partPath(1), 16).toString('hex'));
    t.is(seen.sockets, 0);
  }
});

test('open flags become the request; O_CLOEXEC, O_EXCL, O_CREAT|O_EXCL, O_DIRECTORY behave as on a node', async (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-flags-');
  const probePath = buildProbe(dir);
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const opts = { socket: daemon.socketPath };
  const path = `/dev/disk/by-diskseq/${disk.diskseq}p2`;
  const open = (...flags: string[]): Record<string, unknown> => probe(probePath, ['open', path, ...flags], opts);

  const plain = open('rdonly');
  t.is(plain.errno, 0, String(plain.error));
  t.is(plain.diskseq, disk.diskseq.toString());
  t.deepEqual(plain.rdev, majorMinor(disk.partPath(2)));
  t.is(plain.head, partitionMarker(0).subarray(0, 16).toString('hex'));
  t.is(plain.cloexec, false);
  t.is(plain.sockets, 0);
  t.is(open('rdonly', 'cloexec').cloexec, true);

  const rw = open('rdwr', 'nonblock', 'direct', 'dsync', 'append');
  t.is(rw.errno, 0, String(rw.error));
  const fl = rw.fl as number;
  t.is(fl & O_ACCMODE, constants.O_RDWR);
  for (const [name, bit] of [['O_NONBLOCK', constants.O_NONBLOCK], ['O_DIRECT', constants.O_DIRECT], ['O_DSYNC', constants.O_DSYNC], ['O_APPEND', constants.O_APPEND]] as const) {
    t.is(fl & bit, bit, `${name} on the delivered fd`);
  }
  const sync = open('wronly', 'sync');
  t.is(sync.errno, 0, String(sync.error));
  t.is((sync.fl as number) & constants.O_SYNC, constants.O_SYNC);
  t.is((sync.fl as number) & O_ACCMODE, constants.O_WRONLY);

  // As on a device node: O_CREAT and O_TRUNC are ignored (dd of=, shell >).
  const creat = open('wronly', 'creat', 'trunc');
  t.is(creat.errno, 0, String(creat.error));
  t.deepEqual(head(disk.partPath(2), 512), partitionMarker(0), 'O_TRUNC must not touch the device');
  t.is(open('rdonly', 'creat', 'excl').errno, 17); // EEXIST
  t.is(open('rdonly', 'directory').errno, 20); // ENOTDIR
  t.is(open('rdwr', 'tmpfile').errno, 20);
  t.is(open('accmode').errno, 22); // EINVAL
  const pathFd = open('path');
  t.is(pathFd.errno, 0, String(pathFd.error));
  t.is(pathFd.diskseq, disk.diskseq.toString(), 'O_PATH still gets a verified fd bound to the disk');

  // O_EXCL asks the daemon for an exclusive open: EBUSY while someone holds it exclusively.
  t.is(open('rdonly', 'excl').errno, 0);
  const holder = openSync(disk.partPath(2), constants.O_RDONLY | constants.O_EXCL);
  try {
    t.is(open('rdonly', 'excl').errno, 16); // EBUSY
    t.is(open('rdonly').errno, 0, 'a plain open still works');
  } finally {
    closeSync(holder);
  }
});

// Spellings the shim must answer itself (fail closed, EACCES, when the daemon is not
// there), names in the namespace it refuses without asking the daemon (ENOENT, ENOTDIR
// for a name used as a directory), and paths it leaves to libc (ENOENT: no
// /dev/disk/by-diskseq here). test/preload-spellings.test.ts tells the shim's refusals
// from libc's with stale links in place.
const OURS = ['42', '42-part1', '42p1', '18446744073709551615', '1p4294967295', '7-part4294967295'];
const OURS_SPELLED = ['//dev//disk/./by-diskseq/42', '/dev/disk/../disk/by-diskseq/42p1', '/./dev/disk/by-diskseq/../by-diskseq/42',
  '/dev/disk/by-diskseq/x/../42', '/dev/shm/../disk/by-diskseq/42', '/../dev/disk/by-diskseq/42'];
const NOT_OURS = ['0', '042', '0p1', '42-part0', '42p0', '42p01', '42-part01', '18446744073709551616', '99999999999999999999',
  '1p4294967296', '42-part', '42p', '42x', '42-Part1', '42-part1p1', '42pp1', '-42', '+42', ' 42', '42 ', '4 2', ''];
const REFUSED_AS_DIRECTORY = ['/dev/disk/by-diskseq/42/', '/dev/disk/by-diskseq/42/.', '/dev/disk/by-diskseq/42/x'];
const NOT_OURS_SPELLED = ['/dev/disk/by-diskseq', '/dev/disk/by-diskseq/', '/dev/disk/by-diskseq/42/..', 'dev/disk/by-diskseq/42',
  '/dev/disk/by-id/42', '/dev/by-diskseq/42', '/dev/disk/by-diskseq-x/42'];

test('only strict by-diskseq names are answered by the shim, and it fails closed when the daemon is unreachable', (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-names-');
  const probePath = buildProbe(dir);
  const socket = join(dir, 'no-daemon.sock');
  const errnoOf = (path: string): unknown => probe(probePath, ['open', path, 'rdonly'], { socket }).errno;
  for (const name of OURS) t.is(errnoOf(`/dev/disk/by-diskseq/${name}`), 13, `${name}: EACCES from the shim`);
  for (const path of OURS_SPELLED) t.is(errnoOf(path), 13, `${path}: EACCES from the shim`);
  for (const name of NOT_OURS) t.is(errnoOf(`/dev/disk/by-diskseq/${name}`), 2, `${JSON.stringify(name)}: ENOENT`);
  for (const path of REFUSED_AS_DIRECTORY) t.is(errnoOf(path), 20, `${path}: ENOTDIR from the shim`);
  for (const path of NOT_OURS_SPELLED) t.is(errnoOf(path), 2, `${path}: ENOENT from libc`);
});

test('no daemon, a refused connection or a disk it does not know: the open fails, never falls back to the node', async (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-closed-');
  const probePath = buildProbe(dir);
  const disk = createTestDisk(t);
  const path = `/dev/disk/by-diskseq/${disk.diskseq}`;
  // No socket at all, and a path that is not a socket (connect: ECONNREFUSED/ENOENT).
  for (const socket of [join(dir, 'missing.sock'), probePath]) {
    const seen = probe(probePath, ['open', path, 'rdonly'], { socket });
    t.is(seen.errno, 13, `${socket}: EACCES`);
    const inspect = probe(probePath, ['inspect', path], { socket });
    t.deepEqual(inspect.stat, { errno: 13 });
    t.is(inspect.realpath, null);
    t.is(inspect.sockets, 0);
  }
  const daemon = await startShimDaemon(t);
  const unknown = probe(probePath, ['open', `/dev/disk/by-diskseq/${disk.diskseq + 1000000n}`, 'rdonly'], { socket: daemon.socketPath });
  t.is(unknown.errno, 2, 'ENOENT for a diskseq the daemon does not have');
  const noPartition = probe(probePath, ['open', `${path}-part9`, 'rdonly'], { socket: daemon.socketPath });
  t.is(noPartition.errno, 2, 'ENOENT for a partition the disk does not have');
});
