/**
 * `diskseq-open --list [DEVICE|NAME|FILE]...`: the daemon's disks and partitions, printed
 * like lsblk, each with the DEVICE to open it by — the way an operator learns the current
 * diskseq of loop4, of /dev/mapper/vg-vm, or of the loop device backing /srv/vm.img.
 */
import { realpathSync, statSync } from 'node:fs';
import type { Client } from './client.js';
import type { ListCommand } from './cli-args.js';
import { EXIT_QUERY_FAILED, fail } from './cli-messages.js';
import { parseDeviceSpec } from './device-spec.js';
import type { DeviceInfo } from './device.js';
import { blockDeviceNumber } from './kernel-name.js';
import { backingFile, buildTrees, formatJSON, formatTable, type DeviceTree } from './list-format.js';

/** Lists, filters and prints; resolves to 0, or 1 when some argument matched nothing. */
export async function listDevices(client: Client, command: ListCommand): Promise<number> {
  const devices = await client.list({ includePartitions: true });
  let trees: DeviceTree[];
  let status = 0;
  if (command.filters.length === 0) {
    trees = buildTrees(devices);
  } else {
    trees = [];
    const all = buildTrees(devices);
    const shown = new Set<DeviceInfo>();
    for (const filter of command.filters) {
      const match = matchFilter(filter, devices);
      if (typeof match === 'string') {
        status = fail(EXIT_QUERY_FAILED, `${filter}: ${match}`);
        continue;
      }
      for (const device of match) {
        if (shown.has(device)) continue;
        shown.add(device);
        // A disk comes with its partitions, as lsblk shows it; a partition comes alone.
        const tree = device.partition === 0 ? all.find((t) => t.device === device) : undefined;
        trees.push(tree ?? { device, children: [] });
      }
    }
  }
  const format = { columns: command.columns, bytes: command.bytes, noHeadings: command.noHeadings, utf8: utf8Locale() };
  process.stdout.write(command.json ? formatJSON(trees, format) : formatTable(trees, format));
  return status;
}

/**
 * The devices one argument picks, or why it picks none. In this order: a DEVICE form
 * (42, 42p1, /dev/disk/by-diskseq/42); a kernel name (loop4); a path (/dev/loop4,
 * /dev/mapper/NAME: the block device it is now; a regular file: the loop devices backed by it).
 */
export function matchFilter(filter: string, devices: readonly DeviceInfo[]): DeviceInfo[] | string {
  let spec;
  try {
    spec = parseDeviceSpec(filter);
  } catch {
    spec = undefined;
  }
  if (spec !== undefined) {
    const found = devices.filter((d) => d.diskseq === spec.diskseq && d.partition === spec.partition);
    return found.length > 0 ? found : 'no such disk instance (not, or no longer, served by diskseqd)';
  }
  if (!filter.includes('/')) {
    const found = devices.filter((d) => d.name === filter);
    return found.length > 0 ? found : 'no such device served by diskseqd (an unbound loop device is no disk instance)';
  }
  const number = blockDeviceNumber(filter);
  if (number !== undefined) {
    const found = devices.filter((d) => d.major === number.major && d.minor === number.minor);
    return found.length > 0 ? found : 'a block device that diskseqd does not serve (an unbound loop device is no disk instance)';
  }
  let real: string;
  try {
    if (!statSync(filter).isFile()) return 'neither a block device nor a regular file (a backing file)';
    real = realpathSync(filter);
  } catch (error) {
    return `${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or device' : (error as Error).message}`;
  }
  const found = devices.filter((d) => d.partition === 0 && backingFile(d) === real);
  return found.length > 0 ? found : 'no loop device that diskseqd serves is backed by this file';
}

/** Whether the locale is UTF-8 (lsblk then draws the tree with box-drawing characters). */
function utf8Locale(): boolean {
  const env = process.env;
  const locale = env['LC_ALL'] || env['LC_CTYPE'] || env['LANG'] || '';
  return /utf-?8/i.test(locale);
}
