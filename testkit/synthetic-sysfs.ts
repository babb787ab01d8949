/**
 * A synthetic sysfs tree of many block devices, laid out like the kernel's, for scale
 * tests and benchmarks (the daemon's Sysfs takes its root and /proc/devices as
 * parameters; the daemon takes --sysfs-root). Nothing here is a real device: only a disk
 * given in `extra` (e.g. the test's own loop device, with its real major, minor, DEVNAME
 * and diskseq) or linked in from /sys with `linked` can actually be opened.
 *
 *   class/block/<name>        -> ../../devices/virtual/block/<name>
 *   class/block/<name>p<k>    -> ../../devices/virtual/block/<name>/<name>p<k>
 *   dev/block/<major>:<minor> -> ../../devices/virtual/block/<name>[/<name>p<k>]
 *   devices/virtual/block/<name>/{uevent,size,ro,removable,dev,diskseq}
 *   devices/virtual/block/<name>/<name>p<k>/{uevent,size,ro,partition,start,dev}
 *   devices/virtual/block/<name>/loop/{backing_file,partscan,...}   (loop disks only)
 *   class/block/<real>        -> /sys/class/block/<real>               (`linked` only)
 *   dev/block/<real's dev>    -> /sys/dev/block/<real's dev>
 */
import {
  existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { owned, type TeardownHost } from './cleanup.js';

/** The major the synthetic disks use; /proc/devices of the tree calls it `synth`. */
export const SYNTHETIC_MAJOR = 252;
/** Partitions use the kernel's extended major, as real ones do. */
export const BLKEXT_MAJOR = 259;
/** Minors of synthetic partitions start here, clear of any real partition's minor. */
export const SYNTHETIC_PARTITION_MINOR_BASE = 100_000;
/** Diskseqs of synthetic disks start here, far above any real one on a test machine. */
export const SYNTHETIC_DISKSEQ_BASE = 1_000_000_000_000n;

/** One partition of a synthetic disk (its diskseq is the disk's). */
export interface SyntheticPartition {
  /** 1-based PARTN. */
  number: number;
  /** Kernel and devtmpfs name, e.g. synth0p1 or loop3p1. */
  name: string;
  major: number;
  minor: number;
}

/** One disk of the tree. */
export interface SyntheticDisk {
  name: string;
  devname: string;
  major: number;
  minor: number;
  diskseq: bigint;
  sizeSectors: number;
  readOnly: boolean;
  removable: boolean;
  partitions: SyntheticPartition[];
  /** For a loop disk: its loop/ attributes (a loop disk without them reads as unbound). */
  loop?: { backingFile: string; partscan: boolean };
}

/** How to build a tree. */
export interface SyntheticSpec {
  /** Number of synthetic disks `synth0` ... (major SYNTHETIC_MAJOR, minor = index). */
  count: number;
  /** Every n-th synthetic disk gets two partitions (0: none). */
  partitionsEvery?: number;
  /** Disks added as given (e.g. a real loop device of the test's own). */
  extra?: SyntheticDisk[];
  /**
   * Real block devices of the test's own (kernel names, e.g. loop3) linked in from /sys:
   * the daemon reads the kernel's own attributes for them and can open them.
   */
  linked?: string[];
}

/** A built tree; remove() deletes it. */
export interface SyntheticSysfs {
  /** The sysfs root to pass to `new Sysfs(root, procDevices)`. */
  root: string;
  /** The /proc/devices stand-in. */
  procDevices: string;
  disks: SyntheticDisk[];
  /** Whole disks plus partitions: what one full scan reads a uevent for. */
  entries: number;
  /** The highest diskseq in the tree (of its synthetic and `extra` disks). */
  highest: bigint;
  /** Deletes the tree; idempotent. */
  remove(): void;
}

/**
 * The synthetic disk i: diskseq SYNTHETIC_DISKSEQ_BASE + 2i, so every odd offset below the
 * highest is a diskseq that was "seen" to be passed and is absent (a miss below highest).
 */
export function syntheticDisk(i: number, partitionsEvery = 0): SyntheticDisk {
  return {
    name: `synth${i}`, devname: `synth${i}`, major: SYNTHETIC_MAJOR, minor: i,
    diskseq: SYNTHETIC_DISKSEQ_BASE + 2n * BigInt(i), sizeSectors: 2048 + i, readOnly: i % 7 === 0, removable: i % 11 === 0,
    partitions: partitionsEvery > 0 && i % partitionsEvery === 0
      ? [1, 2].map((number) => ({ number, name: `synth${i}p${number}`, major: BLKEXT_MAJOR, minor: SYNTHETIC_PARTITION_MINOR_BASE + 2 * i + number }))
      : [],
  };
}

/**
 * Builds the tree in a new temporary directory (on tmpfs when /dev/shm exists: thousands of
 * small files take milliseconds there, seconds on a busy VM's disk). It is removed at
 * teardown when `t` is given, and at process exit.
 */
export function createSyntheticSysfs(spec: SyntheticSpec, t?: TeardownHost): SyntheticSysfs {
  const base = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'diskseqd-synthetic-'));
  const remove = owned(t, () => rmSync(base, { recursive: true, force: true }));
  try {
    const root = join(base, 'sys');
    const classDir = join(root, 'class', 'block');
    const devDir = join(root, 'dev', 'block');
    const deviceDir = join(root, 'devices', 'virtual', 'block');
    for (const dir of [classDir, devDir, deviceDir]) mkdirSync(dir, { recursive: true });
    const disks = [...Array.from({ length: spec.count }, (_, i) => syntheticDisk(i, spec.partitionsEvery)), ...(spec.extra ?? [])];
    let entries = 0;
    let highest = 0n;
    for (const disk of disks) {
      const dir = join(deviceDir, disk.name);
      mkdirSync(dir);
      writeAttributes(dir, {
        uevent: `MAJOR=${disk.major}\nMINOR=${disk.minor}\nDEVNAME=${disk.devname}\nDEVTYPE=disk\nDISKSEQ=${disk.diskseq}\n`,
        size: `${disk.sizeSectors}\n`, ro: disk.readOnly ? '1\n' : '0\n', removable: disk.removable ? '1\n' : '0\n',
        dev: `${disk.major}:${disk.minor}\n`, diskseq: `${disk.diskseq}\n`,
      });
      if (disk.loop !== undefined) {
        mkdirSync(join(dir, 'loop'));
        writeAttributes(join(dir, 'loop'), {
          backing_file: `${disk.loop.backingFile}\n`, partscan: disk.loop.partscan ? '1\n' : '0\n',
          offset: '0\n', sizelimit: '0\n', autoclear: '0\n',
        });
      }
      symlinkSync(`../../devices/virtual/block/${disk.name}`, join(classDir, disk.name));
      symlinkSync(`../../devices/virtual/block/${disk.name}`, join(devDir, `${disk.major}:${disk.minor}`));
      entries++;
      if (disk.diskseq > highest) highest = disk.diskseq;
      for (const { number, name: part, major, minor } of disk.partitions) {
        mkdirSync(join(dir, part));
        writeAttributes(join(dir, part), {
          uevent: `MAJOR=${major}\nMINOR=${minor}\nDEVNAME=${part}\nDEVTYPE=partition\nDISKSEQ=${disk.diskseq}\nPARTN=${number}\n`,
          size: '1024\n', ro: disk.readOnly ? '1\n' : '0\n', partition: `${number}\n`, start: `${number * 2048}\n`,
          dev: `${major}:${minor}\n`,
        });
        symlinkSync(`../../devices/virtual/block/${disk.name}/${part}`, join(classDir, part));
        symlinkSync(`../../devices/virtual/block/${disk.name}/${part}`, join(devDir, `${major}:${minor}`));
        entries++;
      }
    }
    for (const name of spec.linked ?? []) {
      symlinkSync(`/sys/class/block/${name}`, join(classDir, name));
      const dev = readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim();
      symlinkSync(`/sys/dev/block/${dev}`, join(devDir, dev));
      entries++;
    }
    const procDevices = join(base, 'devices');
    writeFileSync(procDevices, `Character devices:\n  1 mem\n\nBlock devices:\n  7 loop\n${SYNTHETIC_MAJOR} synth\n${BLKEXT_MAJOR} blkext\n`);
    return { root, procDevices, disks, entries, highest, remove };
  } catch (error) {
    remove();
    throw error;
  }
}

function writeAttributes(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}
