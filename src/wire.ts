/**
 * Constants of the wire contract (DESIGN.md, "Wire contract"), shared by the daemon and
 * the client library. The messages themselves are generated from proto/diskseqd.proto.
 */
import { diskseqd } from '../proto/gen/diskseqd.js';

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
export const Access = diskseqd.v1.Access;
export type Access = diskseqd.v1.Access;
export const EventKind = diskseqd.v1.EventKind;
export type EventKind = diskseqd.v1.EventKind;

/**
 * The sysfs attributes a client may name in `expect` and that `Device.attributes` and the
 * policy use: paths relative to the device's sysfs directory, never a client-chosen path.
 * For a partition, loop/*, dm/*, wwid and device/* are read from the parent disk.
 */
export const ATTRIBUTE_KEYS: readonly string[] = Object.freeze([
  'size', 'ro', 'removable', 'partition', 'start',
  'loop/backing_file', 'loop/offset', 'loop/sizelimit', 'loop/autoclear', 'loop/partscan',
  'dm/name', 'dm/uuid', 'wwid', 'device/serial', 'device/model', 'device/vendor',
  'queue/logical_block_size',
]);

/** Attributes that a partition takes from its parent disk. */
export function readFromParent(key: string): boolean {
  return key.startsWith('loop/') || key.startsWith('dm/') || key === 'wwid' || key.startsWith('device/');
}

/** The symbolic name of an ErrorCode, e.g. 'NOT_FOUND'. */
export function errorCodeName(code: ErrorCode): string {
  return (ErrorCode[code] ?? `ERROR_CODE_${code}`).replace(/^ERROR_CODE_/, '');
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
  sizeBytes: bigint;
  readOnly: boolean;
  removable: boolean;
  /** The disk's driver (e.g. 'loop'); empty when the daemon does not know one. */
  driver: string;
  /** The allow-listed sysfs attributes the device has (DESIGN.md, attribute keys). */
  attributes: Record<string, string>;
}
