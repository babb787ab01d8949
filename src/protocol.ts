/**
 * Decoding and validating client packets, encoding responses. Every request field is
 * checked here, before anything else sees it: what leaves this module is a typed request
 * the rest of the daemon can trust, an operational error to answer, or a protocol
 * violation that costs the client its connection.
 */
import Long from 'long';
import type { diskseqd } from '../proto/gen/diskseqd.js';
import { BrokerError, invalidArgument } from './errors.js';
import type { OpenParams } from './opener.js';
import type { StatusReport } from './status.js';
import { malformation } from './wire-check.js';
import { ATTRIBUTE_KEYS, isAttributeKey } from '../proto/attribute-keys.js';
import {
  accessFromWire, EventKind, MAX_RESPONSE_BYTES, u64FromLong, u64ToLong, wire, type DeviceInfo, type WireDevice,
} from '../proto/contract.js';

/** A packet the daemon cannot accept at all; the connection is dropped. */
export class ProtocolViolation extends Error {
  override name = 'ProtocolViolation';
}

/** A decoded, validated request. `id` is echoed verbatim in every response. */
export type ParsedRequest =
  | { id: Long; kind: 'hello'; protocolVersion: number; clientName: string }
  | { id: Long; kind: 'open'; params: OpenParams }
  | { id: Long; kind: 'list'; includePartitions: boolean }
  | { id: Long; kind: 'watch' }
  | { id: Long; kind: 'status' }
  | { id: Long; kind: 'invalid'; error: BrokerError };

/** Decodes one request packet; throws ProtocolViolation when it is not a Request. */
export function decodeRequest(data: Uint8Array): ParsedRequest {
  const malformed = malformation(data);
  if (malformed !== undefined) throw new ProtocolViolation(`malformed request: ${malformed}`);
  let request: diskseqd.v1.Request;
  try {
    request = wire.Request.decode(data);
  } catch (error) {
    throw new ProtocolViolation(`undecodable request: ${(error as Error).message}`);
  }
  const id = toLong(request.id);
  switch (request.body) {
    case 'hello':
      return { id, kind: 'hello', protocolVersion: request.hello!.protocolVersion ?? 0, clientName: request.hello!.clientName ?? '' };
    case 'open':
      try {
        return { id, kind: 'open', ...validateOpen(request.open!) };
      } catch (error) {
        if (error instanceof BrokerError) return { id, kind: 'invalid', error };
        throw error;
      }
    case 'list':
      return { id, kind: 'list', includePartitions: request.list!.includePartitions === true };
    case 'watch':
      return { id, kind: 'watch' };
    case 'status':
      return { id, kind: 'status' };
    default:
      return { id, kind: 'invalid', error: invalidArgument('request has no body') };
  }
}

function validateOpen(open: diskseqd.v1.IOpenRequest): { params: OpenParams } {
  const diskseq = u64FromLong(open.diskseq);
  if (diskseq === 0n) throw invalidArgument('diskseq 0 is invalid');
  const access = accessFromWire(open.access ?? 0);
  if (access === undefined) throw invalidArgument(`unknown access mode ${open.access}`);
  const expect = new Map<string, string>();
  for (const [key, value] of Object.entries(open.expect ?? {})) {
    if (!isAttributeKey(key)) throw invalidArgument(`attribute ${JSON.stringify(key)} is not one of: ${ATTRIBUTE_KEYS.join(', ')}`);
    expect.set(key, value);
  }
  return {
    params: {
      diskseq, partition: (open.partition ?? 0) >>> 0, access, exclusive: open.exclusive === true,
      direct: open.direct === true, nonblock: open.nonblock === true, sync: open.sync === true,
      dsync: open.dsync === true, expect, waitMs: (open.waitMs ?? 0) >>> 0,
    },
  };
}

/** Encodes an Error response. */
export function encodeError(id: Long, error: BrokerError): Buffer {
  return encode({ id, error: { code: error.code, message: error.message, osErrno: error.osErrno } });
}

/** Encodes a HelloReply. */
export function encodeHello(id: Long, serverVersion: string, features: string[]): Buffer {
  return encode({ id, hello: { protocolVersion: 1, serverVersion, features } });
}

/** Encodes an Opened response (its fd travels beside it in SCM_RIGHTS). */
export function encodeOpened(id: Long, device: DeviceInfo): Buffer {
  return encode({ id, opened: { device: toWireDevice(device) } });
}

/** Encodes a StatusReply (bounded: src/status.ts caps its lists). */
export function encodeStatus(id: Long, report: StatusReport): Buffer {
  const u64 = (n: number) => Long.fromNumber(n, true);
  return encode({
    id,
    status: {
      serverVersion: report.serverVersion, uptimeMs: u64(report.uptimeMs), disks: report.disks, partitions: report.partitions,
      connections: report.connections, connectionsByUid: Object.fromEntries(report.connectionsByUid),
      requests: report.requests.map((r) => ({ op: r.op, code: r.code, count: u64(r.count) })),
      waiting: report.waiting,
      waitingOpens: report.waitingOpens.map((w) => ({
        diskseq: u64ToLong(w.diskseq), partition: w.partition, uid: w.uid >>> 0, waitedMs: w.waitedMs >>> 0,
      })),
      watchers: report.watchers, ueventOverruns: u64(report.ueventOverruns), lastOverrunUnixMs: u64(report.lastOverrunUnixMs),
      lastScanUnixMs: u64(report.lastScanUnixMs), lastScanUs: report.lastScanUs >>> 0, full: report.full,
    },
  });
}

/** Encodes a DeviceEvent response. */
export function encodeEvent(id: Long, kind: EventKind, device?: DeviceInfo): Buffer {
  return encode({ id, event: { kind, device: device === undefined ? null : toWireDevice(device) } });
}

/**
 * Builds a device list as one or more DeviceList responses with the same id, each within
 * MAX_RESPONSE_BYTES, every one but the last with more = true.
 */
export class DeviceListBuilder {
  private batch: WireDevice[] = [];
  private batchBytes = 0;

  constructor(private readonly id: Long) {}

  /** Adds a device; returns a full packet (more = true) when one is ready to send. */
  add(device: DeviceInfo): Buffer | undefined {
    const wireDevice = toWireDevice(device);
    // Each repeated element costs its length plus a tag and a length prefix (<= 6 bytes).
    const bytes = wire.Device.encode(wireDevice).len + 6;
    let full: Buffer | undefined;
    if (this.batch.length > 0 && this.batchBytes + bytes > MAX_RESPONSE_BYTES - 64) {
      full = encode({ id: this.id, devices: { devices: this.batch, more: true } });
      this.batch = [];
      this.batchBytes = 0;
    }
    this.batch.push(wireDevice);
    this.batchBytes += bytes;
    return full;
  }

  /** The last packet (more = false), possibly with no devices. */
  finish(): Buffer {
    return encode({ id: this.id, devices: { devices: this.batch, more: false } });
  }
}

function toWireDevice(device: DeviceInfo): WireDevice {
  return {
    diskseq: u64ToLong(device.diskseq),
    partition: device.partition,
    name: device.name,
    major: device.major,
    minor: device.minor,
    sizeBytes: u64ToLong(device.sizeBytes),
    readOnly: device.readOnly,
    removable: device.removable,
    driver: device.driver,
    attributes: device.attributes,
  };
}

function encode(response: ConstructorParameters<typeof wire.Response>[0]): Buffer {
  const bytes = wire.Response.encode(response!).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toLong(value: Long | number | null | undefined): Long {
  if (value === null || value === undefined) return Long.UZERO;
  return Long.isLong(value) ? value : Long.fromNumber(value, true);
}
