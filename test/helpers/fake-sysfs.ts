/**
 * A synthetic sysfs tree for the daemon's --sysfs-root: many fake disks (uevent files
 * only, no device nodes), plus, when asked, real loop devices linked in from /sys so they
 * can still be opened and verified. Lets a test or bench show what the daemon does with
 * thousands of disks without creating thousands of devices.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TeardownHost } from '../../testkit/cleanup.js';

/** A block major no driver uses here (from the "experimental" range 240-254). */
export const FAKE_MAJOR = 252;

/** What to put in the tree. */
export interface FakeSysfsSpec {
  /** Number of fake disks fake0..fakeN-1. */
  disks: number;
  /** diskseq of fake0; fakeI gets firstDiskseq + I (default 1_000_000_000). */
  firstDiskseq?: bigint;
  /** Real block devices (kernel names, e.g. loop3) to link in from /sys. */
  real?: string[];
}

/** A synthetic sysfs root; remove() deletes it (idempotent). */
export interface FakeSysfs {
  root: string;
  /** diskseq of fake disk i. */
  diskseqOf(i: number): bigint;
  remove(): void;
}

/** Builds the tree; it is removed at teardown when `t` is given. */
export function createFakeSysfs(spec: FakeSysfsSpec, t?: TeardownHost): FakeSysfs {
  // Thousands of small files: on tmpfs this takes milliseconds, on a busy VM disk seconds.
  const root = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'diskseqd-sysfs-'));
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    rmSync(root, { recursive: true, force: true });
  };
  t?.teardown(remove);
  const first = spec.firstDiskseq ?? 1_000_000_000n;
  try {
    const classBlock = join(root, 'class', 'block');
    const devBlock = join(root, 'dev', 'block');
    mkdirSync(classBlock, { recursive: true });
    mkdirSync(devBlock, { recursive: true });
    for (let i = 0; i < spec.disks; i++) {
      const name = `fake${i}`;
      const dir = join(root, 'devices', 'virtual', 'block', name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'uevent'), `MAJOR=${FAKE_MAJOR}\nMINOR=${i}\nDEVNAME=${name}\nDEVTYPE=disk\nDISKSEQ=${first + BigInt(i)}\n`);
      writeFileSync(join(dir, 'size'), '2048\n');
      writeFileSync(join(dir, 'ro'), '0\n');
      writeFileSync(join(dir, 'removable'), '0\n');
      symlinkSync(`../../devices/virtual/block/${name}`, join(classBlock, name));
      symlinkSync(`../../devices/virtual/block/${name}`, join(devBlock, `${FAKE_MAJOR}:${i}`));
    }
    for (const name of spec.real ?? []) {
      symlinkSync(`/sys/class/block/${name}`, join(classBlock, name));
      const dev = readDev(name);
      symlinkSync(`/sys/dev/block/${dev}`, join(devBlock, dev));
    }
  } catch (error) {
    remove();
    throw error;
  }
  return { root, diskseqOf: (i) => first + BigInt(i), remove };
}

function readDev(name: string): string {
  return readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim();
}
