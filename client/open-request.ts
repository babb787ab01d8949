/**
 * OpenOptions: what a caller may ask for, its validation, and its wire form.
 *
 * Only what the wire cannot represent is rejected here (TypeError/RangeError: a
 * programming error). Semantic checks — diskseq 0, an `expect` key outside the allow-list
 * — are the daemon's, which answers INVALID_ARGUMENT, so there is one source of truth.
 */
import Long from 'long';
import { ACCESS_TO_WIRE, type AccessMode } from '../proto/contract.js';
import type { diskseqd } from '../proto/gen/diskseqd.js';

export type { AccessMode };

/** Options of Client.open(). */
export interface OpenOptions {
  /** The disk instance: a bigint, a safe non-negative integer, or a decimal string. */
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

/** Normalises a diskseq to a bigint in the uint64 range; throws TypeError/RangeError. */
export function toDiskseq(value: bigint | number | string): bigint {
  let diskseq: bigint;
  if (typeof value === 'bigint') diskseq = value;
  else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`diskseq ${value} is not a safe integer (pass a bigint or a string)`);
    diskseq = BigInt(value);
  } else if (typeof value === 'string') {
    if (!/^[0-9]+$/.test(value)) throw new RangeError(`diskseq ${JSON.stringify(value)} is not a decimal number`);
    diskseq = BigInt(value);
  } else {
    throw new TypeError('diskseq must be a bigint, a number or a decimal string');
  }
  if (diskseq < 0n || diskseq > UINT64_MAX) throw new RangeError(`diskseq ${diskseq} is outside the uint64 range`);
  return diskseq;
}

function toUint32(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw new RangeError(`${name} must be an integer from 0 to ${UINT32_MAX}, got ${value}`);
  }
  return value;
}

function toFlag(name: string, value: boolean | undefined): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean`);
  return value;
}

/** A validated open request: the diskseq to re-check on the fd, and the wire message. */
export interface PreparedOpen {
  diskseq: bigint;
  partition: number;
  message: diskseqd.v1.IOpenRequest;
}

/** Validates OpenOptions and builds the OpenRequest message. */
export function prepareOpen(options: OpenOptions): PreparedOpen {
  if (options === null || typeof options !== 'object') throw new TypeError('open() needs an options object');
  const diskseq = toDiskseq(options.diskseq);
  const partition = toUint32('partition', options.partition);
  const access = options.access ?? 'read-only';
  if (!Object.hasOwn(ACCESS_TO_WIRE, access)) throw new RangeError(`access must be one of ${Object.keys(ACCESS_TO_WIRE).join(', ')}`);
  const expect: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.expect ?? {})) {
    if (typeof value !== 'string') throw new TypeError(`expect[${JSON.stringify(key)}] must be a string`);
    expect[key] = value;
  }
  return {
    diskseq,
    partition,
    message: {
      diskseq: Long.fromString(diskseq.toString(), true),
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
