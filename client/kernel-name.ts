/**
 * Kernel names and device paths (loop4, /dev/loop4, /dev/mapper/vg-vm) are not disk
 * instances — the name passes to whatever disk is attached next — but an operator has one
 * in hand. These helpers say which disk instance a name or path stands for *now*, from
 * sysfs, for diskseq-open's messages and its --list filters. Nothing here is used to open.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A block device number. */
export interface DeviceNumber {
  major: number;
  minor: number;
}

/** What a kernel name stands for now. */
export interface CurrentInstance {
  /** The kernel name (loop4, loop4p1, dm-3). */
  name: string;
  /** The disk's diskseq now (a partition's is its disk's). */
  diskseq: bigint;
  /** 0 for a whole disk. */
  partition: number;
  /** False for an unbound loop device (or a partition of one): no disk instance to open. */
  bound: boolean;
}

/** The device number of a block device node (following symlinks), or undefined when `path` is not one. */
export function blockDeviceNumber(path: string): DeviceNumber | undefined {
  let rdev: bigint;
  try {
    const stat = statSync(path, { bigint: true });
    if (!stat.isBlockDevice()) return undefined;
    rdev = stat.rdev;
  } catch {
    return undefined;
  }
  // glibc's dev_t encoding (gnu_dev_major / gnu_dev_minor).
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * The disk instance that kernel name `text` (loop4) or device path (/dev/loop4,
 * /dev/mapper/NAME) stands for now, read from sysfs under `sysfsRoot`; undefined when it
 * names no block device (or the kernel has no diskseq attribute).
 */
export function currentInstance(text: string, sysfsRoot = '/sys'): CurrentInstance | undefined {
  let dir: string;
  try {
    if (text.includes('/')) {
      const number = blockDeviceNumber(text);
      if (number === undefined) return undefined;
      dir = realpathSync(join(sysfsRoot, 'dev', 'block', `${number.major}:${number.minor}`));
    } else {
      if (text === '' || text === '.' || text === '..') return undefined;
      dir = realpathSync(join(sysfsRoot, 'class', 'block', text));
    }
    const partitionFile = join(dir, 'partition');
    const partition = existsSync(partitionFile) ? Number(readFileSync(partitionFile, 'utf8').trim()) : 0;
    const diskDir = partition === 0 ? dir : dirname(dir);
    const diskseq = BigInt(readFileSync(join(diskDir, 'diskseq'), 'utf8').trim());
    // A loop device's loop/ directory exists only while it is bound.
    const bound = !/^loop[0-9]+$/.test(basename(diskDir)) || existsSync(join(diskDir, 'loop', 'backing_file'));
    return { name: basename(dir), diskseq, partition, bound };
  } catch {
    return undefined;
  }
}
