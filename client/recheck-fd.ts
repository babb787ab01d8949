/**
 * The client's own check of a delivered fd (docs/design.md, "Open and verify", step 5),
 * in the process that will use it: whatever the daemon says, the fd must be the disk
 * instance and partition that was asked for.
 */
import { readFileSync, statSync } from 'node:fs';
import { native, type NativeError } from '../native/index.js';
import type { DeviceInfo } from './device.js';
import { DiskseqError, protocolError } from './errors.js';

/** Where the kernel describes a block device by its dev_t. */
const SYS_DEV_BLOCK = '/sys/dev/block';

/**
 * Checks that `fd` is a block device, still bound if it is a loop device, whose
 * BLKGETDISKSEQ is `diskseq`, whose st_rdev is the dev_t the daemon described, and which
 * is partition `partition` of that disk (0: the whole disk, not a partition of it). The
 * last check is not redundant: BLKGETDISKSEQ on a partition answers for its disk, so only
 * sysfs's `partition` of st_rdev tells the whole disk from its partitions, and one
 * partition from another. Throws DiskseqError (STALE: the fd is another device than asked
 * for; INTERNAL: it cannot be checked); the caller closes the fd.
 */
export function recheckFd(fd: number, diskseq: bigint, partition: number, device: DeviceInfo): void {
  let probe;
  try {
    probe = native.probeFdSync(fd);
  } catch (error) {
    const cause = error as NativeError;
    throw new DiskseqError('INTERNAL', `cannot check the received fd: ${cause.message}`, { osErrno: cause.errno ?? 0, cause });
  }
  const { S_IFMT, S_IFBLK } = native.constants;
  if ((probe.mode & S_IFMT) !== S_IFBLK) {
    throw new DiskseqError('STALE', `the received fd is not a block device (diskseq ${diskseq} requested)`);
  }
  if (probe.loopBound === false) {
    throw new DiskseqError('STALE', `the received fd is on a loop device that is no longer bound (diskseq ${diskseq} requested)`);
  }
  if (probe.diskseq !== diskseq) {
    const actual = probe.diskseq === null ? `no diskseq (errno ${probe.diskseqErrno})` : `diskseq ${probe.diskseq}`;
    throw new DiskseqError('STALE', `the received fd reports ${actual}, not the requested diskseq ${diskseq}`);
  }
  if (probe.rdevMajor !== device.major || probe.rdevMinor !== device.minor) {
    throw protocolError(`the received fd is device ${probe.rdevMajor}:${probe.rdevMinor}, ` +
      `Opened describes ${device.major}:${device.minor}`);
  }
  const actual = partitionOf(probe.rdevMajor, probe.rdevMinor);
  if (actual !== partition) {
    const what = (n: number): string => (n === 0 ? 'the whole disk' : `partition ${n}`);
    throw new DiskseqError('STALE', `the received fd (device ${probe.rdevMajor}:${probe.rdevMinor}) is ${what(actual)} ` +
      `of diskseq ${diskseq}, not ${what(partition)} as requested`);
  }
}

/**
 * The partition number of block device MAJ:MIN from sysfs (`partition`, absent for a whole
 * disk), read after the fd was received: an open partition cannot be deleted, so the
 * answer holds for as long as the fd is open. Throws INTERNAL when sysfs does not know the
 * device at all: then nothing could be checked.
 */
function partitionOf(major: number, minor: number): number {
  const dir = `${SYS_DEV_BLOCK}/${major}:${minor}`;
  let text: string;
  try {
    text = readFileSync(`${dir}/partition`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && statSync(`${dir}/dev`, { throwIfNoEntry: false }) !== undefined) return 0;
    const cause = error as NodeJS.ErrnoException;
    throw new DiskseqError('INTERNAL', `cannot check the received fd's partition in ${dir}: ${cause.message}`, { cause });
  }
  const number = Number(text.trim());
  if (!Number.isInteger(number) || number <= 0) throw new DiskseqError('INTERNAL', `${dir}/partition reads ${JSON.stringify(text)}`);
  return number;
}
