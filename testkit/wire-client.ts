/**
 * The protocol-level client of tests and benchmarks: speaks the wire contract directly
 * (protobuf over SEQPACKET through the shared, poller-driven PacketSocket), so tests
 * observe exactly what the daemon sends — error codes, fds per packet, multi-packet lists,
 * watch streams, dropped connections — independently of the client library. Also sends
 * arbitrary raw packets, with or without an fd, for hostile tests. (testkit/raw-client.ts
 * is the other one: no framing of the daemon's own code at all.)
 *
 * Ownership: fds that arrive with a response belong to whoever awaits that response; fds
 * that arrive unexpectedly (with no waiter, or more than one per packet) are closed here
 * and counted in `strayFds`.
 */
import Long from 'long';
import { deviceFromWire } from '../client/device.js';
import { native } from '../native/index.js';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { PacketSocket, type CloseReason } from '../native/packet-socket.js';
import { MAX_RESPONSE_BYTES, type DeviceInfo } from '../proto/contract.js';

type Response = diskseqd.v1.Response;

/** Fields of an open request, in test-friendly types. */
export interface OpenParams {
  diskseq: bigint | number;
  partition?: number;
  access?: 'ro' | 'rw' | 'wo';
  exclusive?: boolean;
  direct?: boolean;
  nonblock?: boolean;
  sync?: boolean;
  dsync?: boolean;
  waitMs?: number;
  expect?: Record<string, string>;
}

export type { DeviceInfo };

/** The outcome of one open: an fd the caller now owns, or the daemon's error. */
export type OpenOutcome =
  | { ok: true; fd: number; device: DeviceInfo }
  | { ok: false; code: string; message: string; osErrno: number };

interface Waiter {
  resolve(value: { response: Response; fds: number[] }[]): void;
  reject(error: Error): void;
  parts: { response: Response; fds: number[] }[];
  multi: boolean;
  /** A watch: every response goes here as it comes, and the waiter stays. */
  stream?: (response: Response) => void;
}

/** What happened to a connection after one raw packet (sendRawPacket). */
export interface RawPacketOutcome {
  /** The daemon closed the connection within the wait. */
  dropped: boolean;
  /** Why the connection closed (undefined when it stayed open). */
  reason?: CloseReason;
  /** Packets the daemon sent that answered nothing we asked (e.g. an Error with id 0). */
  strayPackets: number;
  /** fds the daemon sent along with them (closed here). */
  strayFds: number;
}

const ACCESS = { ro: 0, rw: 1, wo: 2 } as const;

/** Converts a wire Device into DeviceInfo (the client library's conversion). */
export function deviceInfo(d: diskseqd.v1.IDevice | null | undefined): DeviceInfo {
  return deviceFromWire(d ?? {});
}

/** The symbolic name of a wire ErrorCode, e.g. 'NOT_FOUND'. */
export function codeName(code: number | null | undefined): string {
  return (diskseqd.v1.ErrorCode[code ?? 0] ?? `ERROR_CODE_${code}`).replace(/^ERROR_CODE_/, '');
}

/** One connection to the daemon. */
export class WireClient {
  private readonly socket: PacketSocket;
  private readonly waiters = new Map<string, Waiter>();
  private nextId = 1n;
  private closeReason: CloseReason | undefined;
  private readonly closeWaiters: ((reason: CloseReason) => void)[] = [];
  /** fds received with no one to hand them to (closed on arrival). */
  strayFds = 0;
  /** Packets the daemon sent that did not decode or matched no request. */
  strayPackets = 0;
  /** Contract breaches seen from the daemon (truncated packets, fds cut off...). */
  readonly violations: string[] = [];

  private constructor(fd: number) {
    this.socket = new PacketSocket(fd, { receiveSize: MAX_RESPONSE_BYTES, maxQueuedPackets: 4096, maxQueuedBytes: 16 << 20, maxQueuedFds: 64, stallTimeoutMs: 0 }, {
      onPacket: (packet) => {
        if (packet.truncated || packet.controlTruncated) {
          // A Response is at most 64 KiB with at most one fd: anything cut off breaks the contract.
          const what = packet.truncated ? 'response longer than 64 KiB' : 'fds cut off (MSG_CTRUNC)';
          this.violations.push(what);
          this.closeStray(packet.fds);
          // Its request can never be answered now: fail every waiter instead of hanging.
          this.socket.close({ kind: 'error', error: new Error(`daemon broke the contract: ${what}`) });
          return;
        }
        this.onPacket(packet.data, packet.fds);
      },
      onClose: (reason) => this.onClose(reason),
    });
  }

  /** Connects to the daemon's socket (a blocking connect; fine for tests). */
  static connect(socketPath: string): WireClient {
    return new WireClient(native.connectSeqpacket(socketPath, true));
  }

  /** Why the connection closed, once it has. */
  get closed(): CloseReason | undefined {
    return this.closeReason;
  }

  /** Resolves with the close reason when the connection closes (at once if it has). */
  whenClosed(): Promise<CloseReason> {
    if (this.closeReason) return Promise.resolve(this.closeReason);
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /**
   * Sends raw bytes as one packet, with `fd` in SCM_RIGHTS when >= 0. Ownership of `fd`
   * passes to this client (it is closed once sent or when the connection closes).
   */
  sendRaw(bytes: Uint8Array, fd = -1): boolean {
    return this.socket.send(Buffer.from(bytes), fd);
  }

  /**
   * Sends one Request and resolves with its single response (and any fds with it, owned by
   * the caller). Rejects when the connection closes first or, with `timeoutMs`, when no
   * response came by then (a late one is then counted as stray, its fds closed).
   */
  async request(body: Omit<diskseqd.v1.IRequest, 'id'>, timeoutMs?: number): Promise<{ response: Response; fds: number[] }> {
    const [first] = await this.exchange(body, false, timeoutMs);
    return first!;
  }

  /** Hello with protocol version 1; resolves with the server version the daemon reports. */
  async hello(clientName = 'diskseqd-test'): Promise<string> {
    const { response, fds } = await this.request({ hello: { protocolVersion: 1, clientName } });
    this.closeStray(fds);
    if (!response.hello) throw new Error(`hello answered with ${JSON.stringify(response.toJSON())}`);
    return response.hello.serverVersion ?? '';
  }

  /**
   * Starts a watch: `onResponse` gets every response to it, in order (ADDED events, one
   * SYNCED, live events — or an Error), until the connection closes (see whenClosed()).
   * Other requests on the same connection are answered in stream order with its events.
   */
  watch(onResponse: (response: Response) => void): void {
    const id = this.nextId++;
    this.waiters.set(id.toString(), { resolve: () => undefined, reject: () => undefined, parts: [], multi: true, stream: onResponse });
    this.socket.send(Buffer.from(diskseqd.v1.Request.encode({ id: Long.fromString(id.toString(), true), watch: {} }).finish()));
  }

  /** Sends an open request; resolves with an owned fd or the daemon's error code. */
  async open(params: OpenParams): Promise<OpenOutcome> {
    const open = {
      diskseq: Long.fromString(params.diskseq.toString(), true),
      partition: params.partition ?? 0,
      access: ACCESS[params.access ?? 'ro'],
      exclusive: params.exclusive ?? false,
      direct: params.direct ?? false,
      nonblock: params.nonblock ?? false,
      sync: params.sync ?? false,
      dsync: params.dsync ?? false,
      waitMs: params.waitMs ?? 0,
      expect: params.expect ?? {},
    };
    const { response, fds } = await this.request({ open });
    if (response.opened) {
      if (fds.length !== 1) {
        for (const fd of fds) native.close(fd);
        throw new Error(`Opened response carried ${fds.length} fds, not exactly 1`);
      }
      return { ok: true, fd: fds[0]!, device: deviceInfo(response.opened.device) };
    }
    for (const fd of fds) native.close(fd);
    if (fds.length > 0) throw new Error(`error response carried ${fds.length} fds`);
    const e = response.error;
    if (!e) throw new Error(`unexpected response to open: ${JSON.stringify(response.toJSON())}`);
    return { ok: false, code: codeName(e.code), message: e.message ?? '', osErrno: e.osErrno ?? 0 };
  }

  /** Lists devices (all parts of a multi-packet DeviceList). */
  async list(includePartitions = true): Promise<DeviceInfo[]> {
    const devices: DeviceInfo[] = [];
    for (const response of await this.listResponses(includePartitions)) {
      if (response.error) throw new Error(`list failed: ${codeName(response.error.code)}: ${response.error.message}`);
      for (const d of response.devices?.devices ?? []) devices.push(deviceInfo(d));
    }
    return devices;
  }

  /** The raw responses to one list request, in arrival order (fds, if any, closed). */
  async listResponses(includePartitions = true): Promise<Response[]> {
    const parts = await this.exchange({ list: { includePartitions } }, true);
    for (const { fds } of parts) {
      for (const fd of fds) native.close(fd);
      this.strayFds += fds.length;
    }
    return parts.map((p) => p.response);
  }

  /** Closes the connection (idempotent); pending requests reject. */
  close(): void {
    this.socket.close();
  }

  private exchange(body: Omit<diskseqd.v1.IRequest, 'id'>, multi: boolean, timeoutMs?: number): Promise<{ response: Response; fds: number[] }[]> {
    const id = this.nextId++;
    const key = id.toString();
    const bytes = diskseqd.v1.Request.encode({ ...body, id: Long.fromString(key, true) }).finish();
    return new Promise((resolve, reject) => {
      if (this.closeReason) {
        reject(new Error(`connection closed (${describeClose(this.closeReason)})`));
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const settle = <T>(then: (value: T) => void) => (value: T): void => {
        clearTimeout(timer);
        then(value);
      };
      const waiter: Waiter = { resolve: settle(resolve), reject: settle(reject), parts: [], multi };
      this.waiters.set(key, waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters.delete(key);
          for (const part of waiter.parts) this.closeStray(part.fds);
          reject(new Error(`no response to request ${key} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      if (!this.socket.send(Buffer.from(bytes))) {
        this.waiters.delete(key);
        waiter.reject(new Error('send failed: connection closed'));
      }
    });
  }

  private onPacket(data: Buffer, fds: number[]): void {
    let response: Response;
    try {
      response = diskseqd.v1.Response.decode(data);
    } catch {
      this.strayPackets++;
      this.closeStray(fds);
      return;
    }
    const key = BigInt(response.id.toString()).toString();
    const waiter = this.waiters.get(key);
    if (!waiter) {
      this.strayPackets++;
      this.closeStray(fds);
      return;
    }
    if (waiter.stream) {
      this.closeStray(fds);
      waiter.stream(response);
      return;
    }
    waiter.parts.push({ response, fds });
    if (waiter.multi && response.devices?.more) return;
    this.waiters.delete(key);
    waiter.resolve(waiter.parts);
  }

  private closeStray(fds: number[]): void {
    for (const fd of fds) {
      this.strayFds++;
      native.close(fd);
    }
  }

  private onClose(reason: CloseReason): void {
    this.closeReason = reason;
    for (const [key, waiter] of this.waiters) {
      this.waiters.delete(key);
      for (const part of waiter.parts) for (const fd of part.fds) native.close(fd);
      waiter.reject(new Error(`connection closed (${describeClose(reason)}) before the response`));
    }
    for (const resolve of this.closeWaiters.splice(0)) resolve(reason);
  }
}

function describeClose(reason: CloseReason): string {
  return reason.kind === 'error' ? `error: ${reason.error.message}` : reason.kind;
}

/**
 * For hostile tests: connects to `socketPath`, sends `bytes` as one packet (with `fd` when
 * >= 0; ownership of fd passes here), and waits up to `waitMs` for the daemon to close the
 * connection. Anything the daemon sends back is decoded and stray fds are closed. The
 * connection is closed before returning either way.
 */
export async function sendRawPacket(socketPath: string, bytes: Uint8Array, fd = -1, waitMs = 3000): Promise<RawPacketOutcome> {
  const client = WireClient.connect(socketPath);
  try {
    client.sendRaw(bytes, fd);
    let timer: NodeJS.Timeout | undefined;
    const reason = await Promise.race([
      client.whenClosed(),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), waitMs);
      }),
    ]);
    clearTimeout(timer);
    return { dropped: reason !== undefined && reason.kind !== 'local', reason, strayPackets: client.strayPackets, strayFds: client.strayFds };
  } finally {
    client.close();
  }
}
