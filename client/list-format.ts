/**
 * How `diskseq-open --list` prints devices, the way lsblk does: one row per device with
 * partitions under their disk, sizes as lsblk prints them (`8M`, `1.5G`) or in bytes, a
 * chosen set of columns, and JSON in lsblk's shape — `{"blockdevices": [{..., "children":
 * [...]}]}` with the column names, lower-cased, as keys. Pure functions of the devices.
 */
import { formatDeviceSpec } from './device-spec.js';
import type { DeviceInfo } from './device.js';

/** A disk and its partitions, in the order they are printed. */
export interface DeviceTree {
  device: DeviceInfo;
  children: DeviceInfo[];
}

/** What a JSON cell can hold: bigint values are written as JSON numbers, digit for digit. */
type Cell = string | number | bigint | boolean | null;

interface Column {
  /** Right-aligned in the table, as lsblk aligns numbers. */
  right: boolean;
  help: string;
  /** The table's text. */
  text(device: DeviceInfo, bytes: boolean): string;
  /** The JSON value. */
  json(device: DeviceInfo, bytes: boolean): Cell;
}

const size = (device: DeviceInfo, bytes: boolean): string => (bytes ? device.sizeBytes.toString() : humanSize(device.sizeBytes));
const flag = (value: boolean): string => (value ? '1' : '0');

/** The columns --output can choose, by name (upper case, as lsblk names them). */
export const COLUMNS: Readonly<Record<string, Column>> = {
  NAME: { right: false, help: 'kernel name', text: (d) => d.name, json: (d) => d.name },
  DEVICE: { right: false, help: 'the DEVICE to open it by (current diskseq)', text: (d) => formatDeviceSpec(d), json: (d) => formatDeviceSpec(d) },
  DISKSEQ: { right: true, help: 'diskseq (of the disk, for a partition)', text: (d) => d.diskseq.toString(), json: (d) => d.diskseq },
  PARTN: { right: true, help: 'partition number', text: (d) => (d.partition === 0 ? '' : String(d.partition)), json: (d) => (d.partition === 0 ? null : d.partition) },
  PATH: { right: false, help: 'device node', text: (d) => `/dev/${d.name}`, json: (d) => `/dev/${d.name}` },
  'MAJ:MIN': { right: true, help: 'major:minor device number', text: (d) => `${d.major}:${d.minor}`, json: (d) => `${d.major}:${d.minor}` },
  RM: { right: true, help: 'removable', text: (d) => flag(d.removable), json: (d) => d.removable },
  SIZE: { right: true, help: 'size', text: size, json: (d, bytes) => (bytes ? d.sizeBytes : humanSize(d.sizeBytes)) },
  RO: { right: true, help: 'read-only', text: (d) => flag(d.readOnly), json: (d) => d.readOnly },
  TYPE: { right: false, help: 'disk, part, loop, dm, crypt, lvm, mpath', text: (d) => deviceType(d), json: (d) => deviceType(d) },
  DRIVER: { right: false, help: 'driver of the major (/proc/devices)', text: (d) => d.driver, json: (d) => d.driver },
  'BACK-FILE': { right: false, help: "a loop device's backing file", text: (d) => loopFile(d) ?? '', json: (d) => loopFile(d) ?? null },
};

/** The columns of the table when --output is not given. */
export const DEFAULT_COLUMNS: readonly string[] = ['NAME', 'DEVICE', 'MAJ:MIN', 'RM', 'SIZE', 'RO', 'TYPE', 'BACK-FILE'];

/** The columns of --json when --output is not given: the table's, and the diskseq and partition as numbers. */
export const DEFAULT_JSON_COLUMNS: readonly string[] = ['NAME', 'DISKSEQ', 'PARTN', 'DEVICE', 'MAJ:MIN', 'RM', 'SIZE', 'RO', 'TYPE', 'BACK-FILE'];

/**
 * Parses --output's LIST: column names separated by commas, in any case; a leading `+`
 * appends them to `defaults` (as lsblk's -o +COL does). Throws a RangeError naming an
 * unknown column.
 */
export function parseColumns(list: string, defaults: readonly string[] = DEFAULT_COLUMNS): string[] {
  const append = list.startsWith('+');
  const names = (append ? list.slice(1) : list).split(',').map((name) => name.trim().toUpperCase());
  for (const name of names) {
    if (!Object.hasOwn(COLUMNS, name)) {
      throw new RangeError(`unknown column ${JSON.stringify(name)} (columns: ${Object.keys(COLUMNS).join(' ')})`);
    }
  }
  return append ? [...defaults, ...names] : names;
}

/**
 * A size as lsblk prints it (util-linux size_to_human_string, one-letter suffix): powers
 * of 1024, at most one decimal, rounded half up, a trailing `.0` dropped: 512B, 1.5K, 8M,
 * 1023.5K, 256G.
 */
export function humanSize(bytes: bigint): string {
  let exp = 0;
  while (exp < 60 && bytes >= 1n << BigInt(exp + 10)) exp += 10;
  const letter = 'BKMGTPE'[exp / 10]!;
  if (exp === 0) return `${bytes}${letter}`;
  const unit = 1n << BigInt(exp);
  let whole = bytes / unit;
  // Thousandths of the unit, then one decimal rounded half up, as util-linux does.
  let tenths = (((bytes % unit) * 1000n) / unit + 50n) / 100n;
  if (tenths === 10n) {
    whole += 1n;
    tenths = 0n;
  }
  return tenths === 0n ? `${whole}${letter}` : `${whole}.${tenths}${letter}`;
}

/** lsblk's TYPE: part, loop, a device-mapper kind from its dm/uuid prefix, else disk. */
export function deviceType(device: DeviceInfo): string {
  if (device.partition !== 0) return 'part';
  if (device.driver === 'loop') return 'loop';
  if (device.driver === 'device-mapper') {
    const uuid = device.attributes['dm/uuid'] ?? '';
    if (uuid.startsWith('CRYPT-')) return 'crypt';
    if (uuid.startsWith('LVM-')) return 'lvm';
    if (uuid.startsWith('mpath-')) return 'mpath';
    return 'dm';
  }
  return 'disk';
}

/**
 * The backing file of a loop device (of its disk, for a partition) as the kernel names it;
 * undefined for other devices.
 */
export function backingFile(device: DeviceInfo): string | undefined {
  const file = device.attributes['loop/backing_file'];
  return file === undefined || file === '' ? undefined : file;
}

/** BACK-FILE: shown on the loop device itself, not repeated on each of its partitions. */
function loopFile(device: DeviceInfo): string | undefined {
  return device.partition === 0 ? backingFile(device) : undefined;
}

/** Groups devices as disks with their partitions, disks in diskseq order; an orphan partition stands alone. */
export function buildTrees(devices: readonly DeviceInfo[]): DeviceTree[] {
  const sorted = [...devices].sort((a, b) => (a.diskseq === b.diskseq ? a.partition - b.partition : a.diskseq < b.diskseq ? -1 : 1));
  const trees: DeviceTree[] = [];
  const disks = new Map<bigint, DeviceTree>();
  for (const device of sorted) {
    const disk = device.partition === 0 ? undefined : disks.get(device.diskseq);
    if (disk !== undefined) {
      disk.children.push(device);
      continue;
    }
    const tree = { device, children: [] };
    trees.push(tree);
    if (device.partition === 0) disks.set(device.diskseq, tree);
  }
  return trees;
}

/** How a listing is printed. */
export interface ListFormat {
  columns: readonly string[];
  /** Sizes in bytes (JSON numbers) instead of lsblk's human form. */
  bytes: boolean;
  noHeadings: boolean;
  /** Draw the tree with box-drawing characters (lsblk does in a UTF-8 locale), else ASCII. */
  utf8: boolean;
}

/** The table: columns separated by one space, numbers right-aligned, partitions drawn under their disk. */
export function formatTable(trees: readonly DeviceTree[], format: ListFormat): string {
  const [branch, last] = format.utf8 ? ['├─', '└─'] : ['|-', '`-'];
  const rows: string[][] = [];
  for (const tree of trees) {
    rows.push(format.columns.map((name) => COLUMNS[name]!.text(tree.device, format.bytes)));
    tree.children.forEach((child, i) => {
      const prefix = i === tree.children.length - 1 ? last : branch;
      rows.push(format.columns.map((name) => (name === 'NAME' ? prefix : '') + COLUMNS[name]!.text(child, format.bytes)));
    });
  }
  const all = format.noHeadings ? rows : [[...format.columns], ...rows];
  const widths = format.columns.map((_, column) => Math.max(0, ...all.map((row) => [...row[column]!].length)));
  return all.map((row) => row.map((cell, column) => {
    const pad = ' '.repeat(widths[column]! - [...cell].length);
    return COLUMNS[format.columns[column]!]!.right ? pad + cell : cell + pad;
  }).join(' ').trimEnd() + '\n').join('');
}

/** lsblk's JSON: {"blockdevices": [...]}, each device with the chosen columns and its "children". */
export function formatJSON(trees: readonly DeviceTree[], format: Pick<ListFormat, 'columns' | 'bytes'>): string {
  const entry = (device: DeviceInfo): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const name of format.columns) out[name.toLowerCase()] = COLUMNS[name]!.json(device, format.bytes);
    return out;
  };
  const blockdevices = trees.map((tree) => {
    const out = entry(tree.device);
    if (tree.children.length > 0) out['children'] = tree.children.map(entry);
    return out;
  });
  return `${stringify({ blockdevices }, '')}\n`;
}

/** JSON text with two-space indents, bigints written as numbers with all their digits. */
function stringify(value: unknown, indent: string): string {
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const inner = `${indent}  `;
    return `[\n${value.map((item) => inner + stringify(item, inner)).join(',\n')}\n${indent}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 0) return '{}';
    const inner = `${indent}  `;
    return `{\n${entries.map(([key, item]) => `${inner}${JSON.stringify(key)}: ${stringify(item, inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}
