/**
 * Unmodified path-only tools (blkid, sfdisk, dd, cryptsetup) open
 * /dev/disk/by-diskseq/... through the LD_PRELOAD shim and the real daemon, and read the
 * right device - and, once that disk instance is gone, fail with the tool's own ENOENT
 * message instead of reading whatever now has the old name (docs/preload.md).
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  createTestDisk, makeExt4, makeLuks, partitionMarker, run, startShimDaemon,
} from '../testkit/preload.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRootAndShim } from './helpers/ci.js';

const EXT4_UUID = '6f1d3c2a-8e4b-4a59-9c7e-2b1f0e5d4a31';
const LUKS_UUID = 'b7c4e0f2-1a3d-4e5f-8a9b-0c1d2e3f4a5b';

test('blkid, sfdisk --dump, dd and cryptsetup luksDump read the right device through the shim', async (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-tools-');
  const disk = createTestDisk(t);
  makeExt4(disk.partPath(1), 'preload-p1', EXT4_UUID);
  makeLuks(disk.partPath(3), dir, LUKS_UUID);
  const daemon = await startShimDaemon(t);
  const base = `/dev/disk/by-diskseq/${disk.diskseq}`;
  const opts = { socket: daemon.socketPath };

  // blkid, both the cached-API path (with a throwaway cache) and the low-level probe.
  for (const args of [['-c', '/dev/null', `${base}-part1`], ['-p', `${base}-part1`]]) {
    const blkid = run('blkid', args, opts);
    t.is(blkid.status, 0, `blkid ${args.join(' ')}: ${blkid.stderr}`);
    t.regex(blkid.stdout.toString(), new RegExp(`^${base}-part1: .*TYPE="ext4"`));
    t.true(blkid.stdout.toString().includes(`UUID="${EXT4_UUID}"`), blkid.stdout.toString());
    t.true(blkid.stdout.toString().includes('LABEL="preload-p1"'), blkid.stdout.toString());
  }
  const blkidLuks = run('blkid', ['-p', `${base}-part3`], opts);
  t.is(blkidLuks.status, 0, blkidLuks.stderr);
  t.true(blkidLuks.stdout.toString().includes(`UUID="${LUKS_UUID}"`) && blkidLuks.stdout.toString().includes('TYPE="crypto_LUKS"'), blkidLuks.stdout.toString());

  // sfdisk --dump: the same table as on /dev/loopN itself, only the names differ.
  const dump = run('sfdisk', ['--dump', base], opts);
  t.is(dump.status, 0, dump.stderr);
  const direct = run('sfdisk', ['--dump', disk.devPath], { shim: false });
  t.is(direct.status, 0, direct.stderr);
  t.is(dump.stdout.toString(), direct.stdout.toString().split(disk.devPath).join(base));
  t.is((dump.stdout.toString().match(/: start=/g) ?? []).length, 3);
  t.true(dump.stdout.toString().includes('label: gpt'));

  // dd of partition 2 (the seed's <N>p<M> spelling) returns exactly its marker.
  const dd = run('dd', [`if=${base}p2`, 'bs=512', 'count=1', 'status=none'], opts);
  t.is(dd.status, 0, dd.stderr);
  t.deepEqual(dd.stdout, partitionMarker(0));

  // cryptsetup luksDump: the same header as on the partition node.
  const luks = run('cryptsetup', ['luksDump', `${base}-part3`], opts);
  t.is(luks.status, 0, luks.stderr);
  t.true(luks.stdout.toString().includes(LUKS_UUID), luks.stdout.toString());
  const luksDirect = run('cryptsetup', ['luksDump', disk.partPath(3)], { shim: false });
  t.is(luks.stdout.toString(), luksDirect.stdout.toString());
});

test('after detach and re-attach the old path fails with ENOENT in the tool and never reads the new disk', async (t) => {
  if (!needsRootAndShim(t)) return;
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const opts = { socket: daemon.socketPath };
  const old = disk.diskseq;

  const before = run('dd', [`if=/dev/disk/by-diskseq/${old}p2`, 'bs=512', 'count=1', 'status=none'], opts);
  t.is(before.status, 0, before.stderr);
  t.deepEqual(before.stdout, partitionMarker(0));

  disk.reattach(); // same /dev/loopN and /dev/loopNp2, new image, new diskseq
  t.true(disk.diskseq > old);

  const dd = run('dd', [`if=/dev/disk/by-diskseq/${old}p2`, 'bs=512', 'count=1', 'status=none'], opts);
  t.not(dd.status, 0);
  t.is(dd.stdout.length, 0, 'dd must not read anything');
  t.regex(dd.stderr, /failed to open '\/dev\/disk\/by-diskseq\/\d+p2': No such file or directory/);

  const sfdisk = run('sfdisk', ['--dump', `/dev/disk/by-diskseq/${old}`], opts);
  t.not(sfdisk.status, 0);
  t.is(sfdisk.stdout.length, 0);
  t.regex(sfdisk.stderr, /cannot open \/dev\/disk\/by-diskseq\/\d+: No such file or directory/);

  const cat = run('cat', [`/dev/disk/by-diskseq/${old}-part2`], opts);
  t.not(cat.status, 0);
  t.is(cat.stdout.length, 0);
  t.regex(cat.stderr, /No such file or directory/);

  const blkid = run('blkid', ['-p', `/dev/disk/by-diskseq/${old}-part2`], opts);
  t.is(blkid.status, 2, 'blkid: exit 2, nothing found');
  t.is(blkid.stdout.length, 0);

  // The new instance is served under its own diskseq (and the old name did not reach it).
  const after = run('dd', [`if=/dev/disk/by-diskseq/${disk.diskseq}p2`, 'bs=512', 'count=1', 'status=none'], opts);
  t.is(after.status, 0, after.stderr);
  t.deepEqual(after.stdout, partitionMarker(1));
});

test('diskseq-open --preload -- COMMAND runs an unmodified tool with the shim', async (t) => {
  if (!needsRootAndShim(t)) return;
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const cli = join(REPO_ROOT, 'bin', 'diskseq-open.js');
  const dd = run(process.execPath, [cli, '--preload', '--socket', daemon.socketPath, '--',
    'dd', `if=/dev/disk/by-diskseq/${disk.diskseq}-part2`, 'bs=512', 'count=1', 'status=none'], { shim: false });
  t.is(dd.status, 0, dd.stderr);
  t.deepEqual(dd.stdout, partitionMarker(0));
  if (!existsSync('/dev/disk/by-diskseq')) {
    // No udev here: without the wrapper the same command finds nothing.
    const bare = run('dd', [`if=/dev/disk/by-diskseq/${disk.diskseq}-part2`, 'bs=512', 'count=1', 'status=none'], { shim: false });
    t.not(bare.status, 0);
  }
});

test('more unmodified tools: hexdump (freopen), ls -lL (xattrs), file, e2fsck, lsblk, blockdev, fdisk', async (t) => {
  if (!needsRootAndShim(t)) return;
  const disk = createTestDisk(t);
  makeExt4(disk.partPath(1), 'preload-more', EXT4_UUID);
  const daemon = await startShimDaemon(t);
  const opts = { socket: daemon.socketPath };
  const base = `/dev/disk/by-diskseq/${disk.diskseq}`;
  const ok = (command: string, args: string[]): string => {
    const result = run(command, args, opts);
    t.is(result.status, 0, `${command} ${args.join(' ')}: ${result.stderr}`);
    t.is(result.stderr.includes('No such file'), false, `${command}: ${result.stderr}`);
    return result.stdout.toString();
  };
  t.true(ok('hexdump', ['-C', '-n', '48', `${base}p2`]).includes('|diskseqd-preload'));
  t.regex(ok('ls', ['-lL', `${base}p2`]), new RegExp(`^b.* 259, *\\d+ .*${base}p2\\n$`));
  t.true(ok('file', ['-s', `${base}-part1`]).includes(`UUID=${EXT4_UUID}`));
  t.true(ok('e2fsck', ['-n', `${base}-part1`]).includes('preload-more: clean'));
  t.is(ok('blockdev', ['--getsize64', `${base}-part2`]).trim(), String(1024 * 1024));
  t.regex(ok('lsblk', ['-rno', 'NAME', base]), new RegExp(`^loop${disk.index}\\n(loop${disk.index}p\\d\\n){3}$`));
  t.true(ok('fdisk', ['-l', base]).includes(`Disk ${base}: `));
});
