/** openDevice / probeFd / closeAsync / mknodBlock / loop helpers against real loop devices. */
import test from 'ava';
import { fstatSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { native, type NativeError } from '../native/index.js';
import { fdFlags } from '../testkit/proc.js';
import { sysfsDiskseq } from '../testkit/loop.js';
import { tempDir } from '../testkit/cleanup.js';
import { attachLoop, claimLoop, makeImage, sysfsDev } from './helpers/native-fixtures.js';
import { needsRoot } from './helpers/ci.js';

const { constants } = native;

test('openDevice of a bound loop device probes binding, diskseq and size', async (t) => {
  if (!needsRoot(t)) return;
  const loop = claimLoop(t);
  const image = makeImage(t, 2 << 20);
  attachLoop(loop, image.fd, 0, 0, 0);

  const { fd, probe } = await native.openDevice(loop.path, constants.O_RDONLY);
  t.teardown(() => native.close(fd));
  t.true(fd >= 0);
  t.is(fdFlags(fd) & constants.O_CLOEXEC, constants.O_CLOEXEC);
  t.is(probe.mode & constants.S_IFMT, constants.S_IFBLK);
  t.deepEqual([probe.rdevMajor, probe.rdevMinor], sysfsDev(loop.index));
  t.is(probe.rdevMajor, 7);
  t.true(probe.loopBound);
  t.is(probe.loopFlags & constants.LO_FLAGS_READ_ONLY, 0);
  t.is(probe.loopFlags & constants.LO_FLAGS_AUTOCLEAR, constants.LO_FLAGS_AUTOCLEAR);
  t.is(probe.diskseq, sysfsDiskseq(loop.name));
  t.is(probe.diskseqErrno, 0);
  t.is(probe.size, BigInt(2 << 20));

  // Async and sync re-probes agree with the first one.
  t.deepEqual(await native.probeFd(fd), probe);
  t.deepEqual(native.probeFdSync(fd), probe);
});

test('an unbound loop device probes loopBound false', async (t) => {
  if (!needsRoot(t)) return;
  const loop = claimLoop(t);
  const { fd, probe } = await native.openDevice(loop.path, constants.O_RDONLY);
  t.teardown(() => native.close(fd));
  t.false(probe.loopBound);
  t.is(probe.loopFlags, 0);
  t.is(probe.rdevMajor, 7);
  t.is(probe.size, 0n);
});

test('read-only loop flags are reported and LOOP_CHANGE_FD bumps the diskseq', async (t) => {
  if (!needsRoot(t)) return;
  const loop = claimLoop(t);
  const first = makeImage(t, 1 << 20, 1);
  const second = makeImage(t, 1 << 20, 2);
  attachLoop(loop, first.fd, constants.LO_FLAGS_READ_ONLY, 0, 0);
  const before = native.probeFdSync(loop.fd);
  t.true(before.loopBound);
  t.is(before.loopFlags & constants.LO_FLAGS_READ_ONLY, constants.LO_FLAGS_READ_ONLY);
  native.loopChangeFd(loop.fd, second.fd);
  const after = native.probeFdSync(loop.fd);
  t.true(after.diskseq! > before.diskseq!);
  t.is(after.diskseq, sysfsDiskseq(loop.name));
});

test('loopConfigure honours offset and sizelimit', (t) => {
  if (!needsRoot(t)) return;
  const loop = claimLoop(t);
  const image = makeImage(t, 4 << 20);
  attachLoop(loop, image.fd, 0, 1 << 20, 2 << 20);
  t.is(native.probeFdSync(loop.fd).size, BigInt(2 << 20));
});

test('a regular file is not a loop device and has no diskseq', async (t) => {
  const image = makeImage(t, 4096);
  const { fd, probe } = await native.openDevice(image.path, constants.O_RDONLY);
  t.teardown(() => native.close(fd));
  t.is(probe.loopBound, null);
  t.is(probe.diskseq, null);
  t.is(probe.diskseqErrno, 25); // ENOTTY
  t.is(probe.size, null);
  t.is(probe.mode & constants.S_IFMT, fstatSync(fd).mode & constants.S_IFMT);
});

test('openDevice rejects with a Node-shaped error', async (t) => {
  const dir = tempDir(t);
  const error = await t.throwsAsync<NativeError>(native.openDevice(join(dir, 'missing'), constants.O_RDONLY));
  t.is(error?.code, 'ENOENT');
  t.is(error?.errno, 2);
  t.is(error?.syscall, 'open');
  t.regex(error?.message ?? '', /^ENOENT: No such file or directory, open '/);
});

test('openDevice does not follow a final symlink (O_NOFOLLOW)', async (t) => {
  const image = makeImage(t, 4096);
  const link = join(tempDir(t), 'link');
  symlinkSync(image.path, link);
  const error = await t.throwsAsync<NativeError>(native.openDevice(link, constants.O_RDONLY));
  t.is(error?.code, 'ELOOP');
});

test('probes of a closed fd fail with EBADF from fstat', async (t) => {
  const image = makeImage(t, 4096);
  const { fd } = await native.openDevice(image.path, constants.O_RDONLY);
  await native.closeAsync(fd);
  const syncError = t.throws<NativeError>(() => native.probeFdSync(fd));
  t.is(syncError?.code, 'EBADF');
  t.is(syncError?.errno, 9);
  t.is(syncError?.syscall, 'fstat');
  const asyncError = await t.throwsAsync<NativeError>(native.probeFd(fd));
  t.is(asyncError?.code, 'EBADF');
  t.is(asyncError?.syscall, 'fstat');
  const closeError = await t.throwsAsync<NativeError>(native.closeAsync(fd));
  t.is(closeError?.code, 'EBADF');
  t.is(closeError?.syscall, 'close');
  t.is(t.throws<NativeError>(() => native.close(fd))?.code, 'EBADF');
});

test('loop ioctls on a non-loop fd fail with the ioctl named', (t) => {
  const image = makeImage(t, 4096);
  const error = t.throws<NativeError>(() => native.loopClear(image.fd));
  t.is(error?.code, 'ENOTTY');
  t.is(error?.syscall, 'ioctl(LOOP_CLR_FD)');
});

test('bad arguments throw TypeError', (t) => {
  t.throws(() => native.probeFdSync(-1), { instanceOf: TypeError });
  t.throws(() => native.close(1.5), { instanceOf: TypeError });
  t.throws(() => native.openDevice('/dev/null\0x', 0), { instanceOf: TypeError });
});

test('mknodBlock creates a block node with the given mode and device number', (t) => {
  if (!needsRoot(t)) return;
  const path = join(tempDir(t), 'node');
  native.mknodBlock(path, 0o100600, 7, 12345);
  const st = statSync(path);
  t.true(st.isBlockDevice());
  t.is(st.mode & 0o7777, 0o600); // file-type bits in mode are ignored
  t.is(st.rdev, (7 << 8) | (12345 & 0xff) | ((12345 & ~0xff) << 12));
  t.is(t.throws<NativeError>(() => native.mknodBlock(path, 0o600, 7, 1))?.code, 'EEXIST');
});

test('two claims held at once get two different unbound loop devices', async (t) => {
  if (!needsRoot(t)) return;
  // The first claim stays unbound, so LOOP_CTL_GET_FREE keeps naming it: the second claim
  // must find another device instead of failing with EBUSY.
  const first = claimLoop(t);
  const second = claimLoop(t);
  t.not(first.index, second.index);
  t.false(native.probeFdSync(first.fd).loopBound);
  t.false(native.probeFdSync(second.fd).loopBound);
  // The exclusive opens really exclude: another O_EXCL open of a claimed device fails.
  const error = await t.throwsAsync<NativeError>(
    native.openDevice(first.path, constants.O_RDONLY | constants.O_EXCL),
  );
  t.is(error?.code, 'EBUSY');
});
