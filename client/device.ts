/**
 * DeviceInfo: the library's view of a `Device` message, and its JSON form. The devices the
 * library hands out serialise themselves: JSON.stringify(device) gives the DeviceJSON form.
 */
import type { diskseqd } from '../proto/gen/diskseqd.js';
import { u64FromLong, type DeviceInfo } from '../proto/contract.js';

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

/**
 * A DeviceInfo as the library hands it out (Client.open, Client.list, watch events): with a
 * toJSON, so that JSON.stringify works on it (a bigint alone makes JSON.stringify throw)
 * and gives DeviceJSON — the library's own field names, 64-bit numbers as decimal strings.
 */
export interface Device extends DeviceInfo {
  toJSON(): DeviceJSON;
}

/**
 * Converts a decoded `Device` (Long 64-bit fields) into a Device. Its toJSON is not
 * enumerable: spreading, Object.keys and deep comparisons see the DeviceInfo fields only.
 */
export function deviceFromWire(device: diskseqd.v1.IDevice): Device {
  const attributes: Record<string, string> = {};
  for (const [key, value] of Object.entries(device.attributes ?? {})) attributes[key] = value;
  return withToJSON({
    diskseq: u64FromLong(device.diskseq),
    partition: device.partition ?? 0,
    name: device.name ?? '',
    major: device.major ?? 0,
    minor: device.minor ?? 0,
    sizeBytes: u64FromLong(device.sizeBytes),
    readOnly: device.readOnly ?? false,
    removable: device.removable ?? false,
    driver: device.driver ?? '',
    attributes,
  });
}

/** Gives `device` a non-enumerable toJSON returning deviceToJSON(device). */
export function withToJSON(device: DeviceInfo): Device {
  return Object.defineProperty(device, 'toJSON', {
    value: function toJSON(this: DeviceInfo): DeviceJSON {
      return deviceToJSON(this);
    },
    enumerable: false, writable: true, configurable: true,
  }) as Device;
}

/** The JSON-safe form of a DeviceInfo (what a Device's toJSON returns). */
export function deviceToJSON(device: DeviceInfo): DeviceJSON {
  return {
    diskseq: device.diskseq.toString(),
    partition: device.partition,
    name: device.name,
    major: device.major,
    minor: device.minor,
    sizeBytes: device.sizeBytes.toString(),
    readOnly: device.readOnly,
    removable: device.removable,
    driver: device.driver,
    attributes: { ...device.attributes },
  };
}
