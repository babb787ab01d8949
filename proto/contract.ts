/**
 * The TypeScript side of the wire contract (proto/diskseqd.proto; docs/design.md, "Wire
 * contract"), shared by the daemon and the client library as seatd shares `common/`:
 * the protocol's constants, the generated messages and enums under short names, the one
 * access-mode type, and the ErrorCode names. Everything else imports the generated code
 * through this module.
 */
import Long from 'long';
import { diskseqd } from './gen/diskseqd.js';

/** The protocol version this code speaks. */
export const PROTOCOL_VERSION = 1;
/** Largest Request packet a client may send. */
export const MAX_REQUEST_BYTES = 4096;
/** Largest Response packet the daemon sends; clients receive into a buffer this big. */
export const MAX_RESPONSE_BYTES = 65536;
/** The default socket path; clients honour DISKSEQD_SOCKET, then this. */
export const DEFAULT_SOCKET_PATH = '/run/diskseqd.sock';

/** Generated message classes and enums, re-exported under short names. */
export const wire = diskseqd.v1;
export type WireRequest = diskseqd.v1.Request;
export type WireResponse = diskseqd.v1.Response;
export type WireDevice = diskseqd.v1.IDevice;
export const ErrorCode = diskseqd.v1.ErrorCode;
export type ErrorCode = diskseqd.v1.ErrorCode;
export const EventKind = diskseqd.v1.EventKind;
export type EventKind = diskseqd.v1.EventKind;

/**
 * Access mode of a delivered fd, as the policy file, the client library and the audit log
 * spell it. The wire's zero value, 'read-only', is the safe default.
 */
export type AccessMode = 'read-only' | 'read-write' | 'write-only';

/** Every AccessMode, in the order messages list them. */
export const ACCESS_MODES: readonly AccessMode[] = Object.freeze(['read-only', 'read-write', 'write-only']);

/** AccessMode -> the wire's Access value. */
export const ACCESS_TO_WIRE: Readonly<Record<AccessMode, diskseqd.v1.Access>> = Object.freeze({
  'read-only': diskseqd.v1.Access.ACCESS_READ_ONLY,
  'read-write': diskseqd.v1.Access.ACCESS_READ_WRITE,
  'write-only': diskseqd.v1.Access.ACCESS_WRITE_ONLY,
});

/** The wire's Access value -> AccessMode; undefined for a value this version does not know. */
export function accessFromWire(value: number): AccessMode | undefined {
  return ACCESS_MODES.find((mode) => ACCESS_TO_WIRE[mode] === value);
}

/** An ErrorCode's name without its prefix, e.g. 'NOT_FOUND'. */
export type ErrorCodeName = keyof typeof diskseqd.v1.ErrorCode extends infer K
  ? K extends `ERROR_CODE_${infer Name}` ? Name : never
  : never;

/** Every ErrorCodeName, derived from the generated enum (in wire-value order). */
export const ERROR_CODE_NAMES: readonly ErrorCodeName[] = Object.freeze(
  Object.entries(diskseqd.v1.ErrorCode)
    .sort(([, a], [, b]) => (a as number) - (b as number))
    .map(([key]) => key.replace(/^ERROR_CODE_/, '') as ErrorCodeName),
);

/** The name of an ErrorCode, e.g. 'NOT_FOUND'; `ERROR_CODE_<n>` stripped to `<n>` for unknown values. */
export function errorCodeName(code: ErrorCode | number): string {
  return (ErrorCode[code as ErrorCode] ?? `ERROR_CODE_${code}`).replace(/^ERROR_CODE_/, '');
}

/** One disk or partition as the daemon describes it (the Device message, 64-bit fields as bigint). */
export interface DeviceInfo {
  /** The disk instance's diskseq (for a partition: its parent disk's). */
  diskseq: bigint;
  /** Partition number; 0 for the whole disk. */
  partition: number;
  /** Kernel name, e.g. 'loop3' or 'loop3p1'. */
  name: string;
  major: number;
  minor: number;
  /** Size in bytes (sysfs `size` in attributes counts 512-byte sectors, whatever the block size). */
  sizeBytes: bigint;
  readOnly: boolean;
  removable: boolean;
  /** The disk's driver (e.g. 'loop'); empty when the daemon does not know one. */
  driver: string;
  /**
   * The allow-listed sysfs attributes the device has, as sysfs writes them (see
   * proto/attribute-keys.ts): `size` is in 512-byte sectors, unlike sizeBytes.
   */
  attributes: Record<string, string>;
}

/**
 * A uint64 wire field as protobufjs's Long, from a bigint. By its two 32-bit halves:
 * Long.fromString(v.toString()) parses digit by digit with multiplications, and was a
 * visible cost per request on the daemon's open path (perf).
 */
export function u64ToLong(value: bigint): Long {
  return Long.fromBits(Number(value & 0xffffffffn), Number((value >> 32n) & 0xffffffffn), true);
}

/** A uint64 wire field (Long, or a number for small values) as a bigint, by its halves. */
export function u64FromLong(value: Long | number | null | undefined): bigint {
  if (value === null || value === undefined) return 0n;
  if (typeof value === 'number') return BigInt(value);
  return (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
}
