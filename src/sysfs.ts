/**
 * Reading the kernel's view of block devices from sysfs. The root is a parameter so tests
 * can point it at a synthetic tree. Only names that sysfs itself listed and attribute keys
 * from the fixed allow-list ever become paths here; no client input does.
 */
import { closeSync, opendirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readFromParent } from '../proto/attribute-keys.js';
import { monotonicMs } from './clock.js';

/** The facts one `uevent` file gives about a block device. */
export interface Uevent {
  /** The sysfs name (directory name in class/block), e.g. loop3 or loop3p1. */
  name: string;
  /** The devtmpfs name, e.g. loop3; validated to be a safe relative path. */
  devname: string;
  major: number;
  minor: number;
  isPartition: boolean;
  /** DISKSEQ= (for a partition: its parent disk's); null when absent. */
  diskseq: bigint | null;
  /** PARTN= for partitions, else 0. */
  partition: number;
}

/** Counts of what this reader touched, so tests can prove a lookup did not scan. */
export interface SysfsCounters {
  ueventReads: number;
  attributeReads: number;
  directoryListings: number;
}

/** How long a major that /proc/devices does not name is not looked up again. */
const UNKNOWN_MAJOR_RECHECK_MS = 1000;

// A devtmpfs name: path components of ordinary characters, never '.' or '..'.
const SAFE_DEVNAME = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9_.+:!-]+(?:\/[A-Za-z0-9_.+:!-]+)*$/;

export class Sysfs {
  readonly counters: SysfsCounters = { ueventReads: 0, attributeReads: 0, directoryListings: 0 };
  private driverByMajor: Map<number, string> | undefined;
  /** Majors /proc/devices did not name, and until when not to look again (at most 4096). */
  private readonly unknownUntil = new Map<number, number>();

  /**
   * @param root the sysfs mount, normally /sys
   * @param procDevices the file mapping block majors to driver names, normally /proc/devices
   */
  constructor(readonly root = '/sys', private readonly procDevices = '/proc/devices') {}

  /**
   * Names of the block devices with a non-zero size, from /proc/partitions (which leaves
   * out empty devices, unbound loops among them) in one read: undefined when the root is
   * not the real /sys, which that file describes, or when it cannot be read. Only a device
   * with a size can ever verify (docs/design.md, "Open and verify", step b).
   */
  nonEmptyBlockDevices(): string[] | undefined {
    if (this.root !== '/sys') return undefined;
    let text: string;
    try {
      text = readFileSync('/proc/partitions', 'latin1');
    } catch {
      return undefined;
    }
    const names: string[] = [];
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // major minor #blocks name; sysfs spells a '/' in a kernel name as '!'.
      if (fields.length === 4 && fields[2] !== '0') names.push(fields[3]!.replace(/\//g, '!'));
    }
    return names;
  }

  /** Names of every block device (disks and partitions) sysfs lists now. */
  listBlockDevices(): string[] {
    this.counters.directoryListings++;
    return readdirSync(join(this.root, 'class', 'block'));
  }

  /**
   * The same names, read from the directory as they are taken, so that a caller can yield
   * between them: with thousands of unbound loop devices one readdirSync() holds the JS
   * thread for ~5 ms. The directory is closed when the iteration ends, however it ends.
   */
  *blockDeviceNames(): Generator<string> {
    this.counters.directoryListings++;
    const dir = opendirSync(join(this.root, 'class', 'block'), { bufferSize: 256 });
    try {
      for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) yield entry.name;
    } finally {
      dir.closeSync();
    }
  }

  /** Reads `class/block/<name>/uevent`; null when the device is gone or the file is unusable. */
  readUevent(name: string): Uevent | null {
    this.counters.ueventReads++;
    const text = readOptional(join(this.root, 'class', 'block', name, 'uevent'));
    return text === undefined ? null : parseUevent(name, text);
  }

  /**
   * Whether loop device `name` is bound: sysfs has its `loop/` directory only while it is
   * (one stat, where reading its uevent and then `loop/backing_file` costs five calls).
   */
  loopBound(name: string): boolean {
    this.counters.attributeReads++;
    return statSync(join(this.root, 'class', 'block', name, 'loop'), { throwIfNoEntry: false }) !== undefined;
  }

  /**
   * The name of a partition's parent disk, from where sysfs places the partition's
   * directory (class/block/<part> links to .../block/<disk>/<part>).
   */
  parentOf(partitionName: string): string | null {
    try {
      return basename(dirname(readlinkSync(join(this.root, 'class', 'block', partitionName))));
    } catch {
      return null;
    }
  }

  /**
   * The inode of the device's sysfs directory (class/block/<name>, followed): the kernel
   * makes a new one for every new partition, so it tells a partition object from a later
   * one of the same name (src/partition-provenance.ts). null when the device is gone.
   */
  identityOf(name: string): bigint | null {
    return statSync(join(this.root, 'class', 'block', name), { bigint: true, throwIfNoEntry: false })?.ino ?? null;
  }

  /** Partition names below a disk (sub-directories that carry a `partition` file). */
  partitionsOf(diskName: string): string[] {
    this.counters.directoryListings++;
    let entries: string[];
    try {
      entries = readdirSync(join(this.root, 'class', 'block', diskName));
    } catch {
      return [];
    }
    return entries.filter((entry) => entry.startsWith(diskName) && readOptional(join(this.root, 'class', 'block', diskName, entry, 'partition')) !== undefined);
  }

  /**
   * The device sysfs lists under this name now (class/block/<name>), to read its
   * attributes: how the registry, List and pre-authorisation see a device.
   */
  deviceByName(name: string, isPartition: boolean): SysfsDevice {
    return new SysfsDevice(this, `${this.root}/class/block/${name}`, isPartition);
  }

  /**
   * The device with this dev_t (dev/block/MAJ:MIN): facts about the device an fd is bound
   * to, whatever name it has. (The open job reads the same paths, from the same root.)
   */
  deviceByDevt(major: number, minor: number, isPartition: boolean): SysfsDevice {
    return new SysfsDevice(this, `${this.root}/dev/block/${major}:${minor}`, isPartition);
  }

  /**
   * The driver name of a block major from /proc/devices ('loop', 'device-mapper', ...).
   * A major not listed makes it re-read the file (a driver may have registered since),
   * but at most once a second per such major: a scan of thousands of devices whose major
   * /proc/devices does not name (synthetic trees) would otherwise re-read it per device.
   */
  driverOf(major: number): string {
    let driver = this.driverByMajor?.get(major);
    if (driver === undefined && (this.unknownUntil.get(major) ?? 0) <= monotonicMs()) {
      this.driverByMajor = this.readDrivers();
      driver = this.driverByMajor.get(major);
      if (driver === undefined) this.unknownUntil.set(major, monotonicMs() + UNKNOWN_MAJOR_RECHECK_MS);
    }
    return driver ?? `major-${major}`;
  }

  /** Reads one attribute file (`dir`/`key`), trailing newline trimmed; undefined when absent. */
  readAttribute(dir: string, key: string): string | undefined {
    this.counters.attributeReads++;
    const text = readOptional(`${dir}/${key}`);
    return text === undefined ? undefined : text.replace(/\n$/, '');
  }

  private readDrivers(): Map<number, string> {
    const drivers = new Map<number, string>();
    let text = '';
    try {
      text = readFileSync(this.procDevices, 'utf8'); // rare, and may exceed one page
    } catch {
      // No /proc/devices: drivers are named by major number.
    }
    const block = text.split('Block devices:')[1] ?? '';
    for (const line of block.split('\n')) {
      const match = /^\s*(\d+)\s+(\S+)$/.exec(line);
      if (match) drivers.set(Number(match[1]), match[2]!);
    }
    return drivers;
  }
}

/**
 * The allow-listed attributes of one device, read through one sysfs directory: the one way
 * the daemon reads a device's attributes. It knows which keys a partition takes from its
 * parent disk (proto/attribute-keys.ts, readFromParent) and reads those through `<dir>/..`,
 * built as text and resolved by the kernel after it follows the directory's symlink, so it
 * reaches the parent disk's directory (path.join would collapse it to the wrong place).
 * Each key is read at most once per SysfsDevice: obtain a new one for a fresh look.
 */
export class SysfsDevice {
  private readonly cache = new Map<string, string | undefined>();

  constructor(private readonly sysfs: Sysfs, readonly dir: string, readonly isPartition: boolean) {}

  /** The attribute's value, trailing newline trimmed; undefined when the device lacks it. */
  attribute(key: string): string | undefined {
    if (this.cache.has(key)) return this.cache.get(key);
    const value = this.sysfs.readAttribute(this.isPartition && readFromParent(key) ? `${this.dir}/..` : this.dir, key);
    this.cache.set(key, value);
    return value;
  }
}

/** Parses one uevent file; null when a required key is missing or malformed. */
export function parseUevent(name: string, text: string): Uevent | null {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const major = Number(fields.get('MAJOR'));
  const minor = Number(fields.get('MINOR'));
  const devname = fields.get('DEVNAME') ?? '';
  const devtype = fields.get('DEVTYPE');
  if (!Number.isInteger(major) || !Number.isInteger(minor) || !SAFE_DEVNAME.test(devname)) return null;
  if (devtype !== 'disk' && devtype !== 'partition') return null;
  const diskseqText = fields.get('DISKSEQ');
  const diskseq = diskseqText !== undefined && /^[0-9]{1,20}$/.test(diskseqText) ? BigInt(diskseqText) : null;
  const partition = devtype === 'partition' ? Number(fields.get('PARTN')) : 0;
  if (devtype === 'partition' && !(Number.isInteger(partition) && partition > 0)) return null;
  return { name, devname, major, minor, isPartition: devtype === 'partition', diskseq, partition };
}

/** sysfs attributes and uevent files are at most a page. */
const readBuffer = Buffer.allocUnsafe(4096);

/**
 * A small file's text, or undefined when it cannot be read: a missing file is the open's
 * ENOENT, never a stat first (one system call fewer for every file that exists). The open
 * path reads none of these: its attributes are read by the open job, off the event loop.
 */
function readOptional(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const bytes = readSync(fd, readBuffer, 0, readBuffer.length, 0);
    return readBuffer.toString('utf8', 0, bytes);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
