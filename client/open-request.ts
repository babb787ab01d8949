/**
 * OpenOptions: what a caller may ask for, its validation, and its wire form.
 *
 * What the daemon would refuse as INVALID_ARGUMENT on its face — diskseq 0, negative,
 * fractional or out of range numbers, an unknown access mode, a flag that is not a boolean —
 * is refused here, before anything is sent, with the same DiskseqError 'INVALID_ARGUMENT':
 * one kind of error whichever side finds the mistake. Which `expect` keys exist stays the
 * daemon's to say (a newer daemon may know more of them).
 */
import { ACCESS_TO_WIRE, u64ToLong, type AccessMode } from '../proto/contract.js';
import type { diskseqd } from '../proto/gen/diskseqd.js';
import { invalidArgument } from './errors.js';

export type { AccessMode };

/** Options of Client.open(). */
export interface OpenOptions {
  /** The disk instance (>= 1): a bigint, a safe positive integer, or a decimal string. */
  diskseq: bigint | number | string;
  /** Partition number; 0 (the default) is the whole disk. */
  partition?: number;
  /** Default 'read-only'. */
  access?: AccessMode;
  /** O_EXCL: fails with BUSY while anyone else holds the device exclusively (or mounted). */
  exclusive?: boolean;
  /** O_DIRECT. */
  direct?: boolean;
  /** O_NONBLOCK. */
  nonblock?: boolean;
  /** O_SYNC. */
  sync?: boolean;
  /** O_DSYNC. */
  dsync?: boolean;
  /** How long the daemon may wait for the device (or partition) to appear, in ms; 0 = not. */
  waitMs?: number;
  /** sysfs attributes that must hold at open time (docs/design.md, "Attribute keys"). */
  expect?: Record<string, string>;
  /** Aborting rejects the open with an AbortError; an fd that arrives later is closed. */
  signal?: AbortSignal;
}

const UINT64_MAX = (1n << 64n) - 1n;
const UINT32_MAX = 0xffff_ffff;

/**
 * Normalises a diskseq to a bigint from 1 to 2^64-1 (0 is never a diskseq); anything else
 * throws DiskseqError 'INVALID_ARGUMENT'.
 */
export function toDiskseq(value: bigint | number | string): bigint {
  let diskseq: bigint;
  if (typeof value === 'bigint') diskseq = value;
  else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw invalidArgument(`diskseq ${value} is not a safe integer (pass a bigint or a string)`);
    diskseq = BigInt(value);
  } else if (typeof value === 'string') {
    if (!/^[0-9]+$/.test(value)) throw invalidArgument(`diskseq ${JSON.stringify(value)} is not a decimal number`);
    diskseq = BigInt(value);
  } else {
    throw invalidArgument('diskseq must be a bigint, a number or a decimal string');
  }
  if (diskseq === 0n) throw invalidArgument('diskseq 0 is not a disk instance (diskseqs start at 1)');
  if (diskseq < 0n || diskseq > UINT64_MAX) throw invalidArgument(`diskseq ${diskseq} is outside the range 1 to 2^64-1`);
  return diskseq;
}

function toUint32(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw invalidArgument(`${name} must be an integer from 0 to ${UINT32_MAX}, got ${String(value)}`);
  }
  return value;
}

function toFlag(name: string, value: boolean | undefined): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalidArgument(`${name} must be a boolean`);
  return value;
}

/** A validated open request: the diskseq to re-check on the fd, and the wire message. */
export interface PreparedOpen {
  diskseq: bigint;
  partition: number;
  message: diskseqd.v1.IOpenRequest;
}

/** Validates OpenOptions and builds the OpenRequest message; throws DiskseqError 'INVALID_ARGUMENT'. */
export function prepareOpen(options: OpenOptions): PreparedOpen {
  if (options === null || typeof options !== 'object') throw invalidArgument('open() needs an options object');
  const diskseq = toDiskseq(options.diskseq);
  const partition = toUint32('partition', options.partition);
  const access = options.access ?? 'read-only';
  if (typeof access !== 'string' || !Object.hasOwn(ACCESS_TO_WIRE, access)) {
    throw invalidArgument(`access must be one of ${Object.keys(ACCESS_TO_WIRE).join(', ')}, got ${JSON.stringify(access)}`);
  }
  if (options.expect !== undefined && (options.expect === null || typeof options.expect !== 'object')) {
    throw invalidArgument('expect must be an object of attribute key to value');
  }
  const expect: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.expect ?? {})) {
    if (typeof value !== 'string') throw invalidArgument(`expect[${JSON.stringify(key)}] must be a string`);
    expect[key] = value;
  }
  return {
    diskseq,
    partition,
    message: {
      diskseq: u64ToLong(diskseq),
      partition,
      access: ACCESS_TO_WIRE[access],
      exclusive: toFlag('exclusive', options.exclusive),
      direct: toFlag('direct', options.direct),
      nonblock: toFlag('nonblock', options.nonblock),
      sync: toFlag('sync', options.sync),
      dsync: toFlag('dsync', options.dsync),
      waitMs: toUint32('waitMs', options.waitMs),
      expect,
    },
  };
}
