/**
 * DeviceInfo: the library's view of a `Device` message, and its JSON form.
 */
import type { diskseqd } from '../proto/gen/diskseqd.js';
import type { DeviceInfo } from '../proto/contract.js';

export type { DeviceInfo };

/**
 * DeviceInfo as valid JSON: the 64-bit numbers become decimal strings (the proto3 JSON
 * mapping for uint64, and lossless beyond 2^53); everything else keeps its type.
 */
export interface DeviceJSON {
  diskseq: string;
  partition: number;
  name: string;
  major: number;
  minor: number;
  sizeBytes: string;
  readOnly: boolean;
  removable: boolean;
  driver: string;
  attributes: Record<string, string>;
}

/** Converts a decoded `Device` (Long 64-bit fields) into a DeviceInfo. */
export function deviceFromWire(device: diskseqd.v1.IDevice): DeviceInfo {
  const attributes: Record<string, string> = {};
  for (const [key, value] of Object.entries(device.attributes ?? {})) attributes[key] = value;
  return {
    diskseq: BigInt((device.diskseq ?? 0).toString()),
    partition: device.partition ?? 0,
    name: device.name ?? '',
    major: device.major ?? 0,
    minor: device.minor ?? 0,
    sizeBytes: BigInt((device.sizeBytes ?? 0).toString()),
    readOnly: device.readOnly ?? false,
    removable: device.removable ?? false,
    driver: device.driver ?? '',
    attributes,
  };
}

/** The JSON-safe form of a DeviceInfo (for JSON.stringify and `diskseq-open --json`). */
export function deviceToJSON(device: DeviceInfo): DeviceJSON {
  return {
    ...device,
    diskseq: device.diskseq.toString(),
    sizeBytes: device.sizeBytes.toString(),
    attributes: { ...device.attributes },
  };
}
