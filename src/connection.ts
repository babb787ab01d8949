/**
 * One client connection: packets in, requests dispatched, responses out, one audit line
 * per request. Two kinds of failure, handled differently: a protocol violation (bad
 * packet, fds from the client) is logged once and costs the client its connection; an
 * operational failure becomes an Error response and the connection goes on.
 */
import { setMaxListeners } from 'node:events';
import { describeInTurns, listDevices } from './device-info.js';
import { BrokerError, internal, invalidArgument, resourceExhausted, unsupported } from './errors.js';
import type { FairTurns } from './fair-turns.js';
import type { Linked } from './insertion-list.js';
import type { Logger } from './log.js';
import { RequestCancelled, type Opener, type OpenTrace } from './opener.js';
import { PacketSocket, type CloseReason, type IncomingPacket } from '../native/packet-socket.js';
import type { Peer } from './policy/index.js';
import {
  decodeRequest, DeviceListBuilder, encodeError, encodeHello, encodeOpened, encodeStatus, ProtocolViolation, type ParsedRequest,
} from './protocol.js';
import type { StatusReport } from './status.js';
import type { ConnectionFdAccount, Quotas } from './quotas.js';
import type { Registry } from './registry.js';
import type { WatchHub } from './watch-hub.js';
import { ErrorCode, errorCodeName, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_VERSION, u64FromLong } from '../proto/contract.js';

/** Per-connection bounds. */
export interface ConnectionLimits {
  /** Requests being worked on at once; beyond it the connection is not read (back-pressure). */
  maxInFlight: number;
  /** Output queued for a client that does not read, before it is dropped. */
  maxQueuedPackets: number;
  maxQueuedBytes: number;
  maxQueuedFds: number;
  /** How long a client may leave queued output unread before it is dropped. */
  stallTimeoutMs: number;
}

/** What every connection shares with the server. */
export interface ConnectionContext {
  readonly opener: Opener;
  readonly registry: Registry;
  readonly log: Logger;
  readonly limits: ConnectionLimits;
  readonly watchHub: WatchHub;
  /** The per-uid shares every front-end consults (src/quotas.ts). */
  readonly quotas: Quotas;
  /** Where List and Watch snapshots take their turns. */
  readonly turns: FairTurns;
  readonly serverVersion: string;
  /** Called when the connection goes from idle to busy or back, and when it closes. */
  readonly onActivity: () => void;
  /** Called once per request answered (or abandoned) with its audit op and code, for the counts. */
  readonly onRequestDone: (op: string, code: string) => void;
  /** The status view as this peer may see it (src/status.ts); without it, no "status" feature. */
  readonly status?: (peer: Peer) => StatusReport;
}

/** The request kinds HelloReply.features lists. */
const FEATURES = ['open', 'list', 'watch', 'wait', 'status'];

export class Connection implements Linked<Connection> {
  /** The server's list of connections links its members here (src/insertion-list.ts). */
  prev: Connection | undefined = undefined;
  next: Connection | undefined = undefined;
  private readonly socket: PacketSocket;
  private readonly log: Logger;
  private readonly fdAccount: ConnectionFdAccount;
  private inFlight = 0;
  /** Aborts when the connection closes: made on first use (closedSignal). */
  private closedController: AbortController | undefined;
  private stopWatching: (() => void) | undefined;
  private fdRefusalLogged = false;

  /**
   * Takes ownership of a connected socket fd whose peer credentials were read at accept.
   * `onReleased` runs once, after the socket fd is closed: when the connection closes, or
   * later if the peer still had fds unreceived then (docs/design.md, "Limits").
   */
  constructor(fd: number, readonly peer: Peer, private readonly ctx: ConnectionContext, private readonly onReleased: (c: Connection) => void) {
    this.log = ctx.log.child({ peer: { uid: peer.uid, gid: peer.gid, pid: peer.pid } });
    const { maxQueuedPackets, maxQueuedBytes, maxQueuedFds, stallTimeoutMs } = ctx.limits;
    this.fdAccount = ctx.quotas.unreceivedFds.account(peer.uid, () => this.socket.refreshUnreceived());
    try {
      this.socket = new PacketSocket(fd, {
        receiveSize: MAX_REQUEST_BYTES, maxQueuedPackets, maxQueuedBytes, maxQueuedFds, stallTimeoutMs,
        unreceivedFds: this.fdAccount, closeOnHangUp: true, passCredentials: true, minSendBuffer: 2 * MAX_RESPONSE_BYTES,
      }, {
        onPacket: (packet) => this.onPacket(packet),
        onClose: (reason) => this.onClose(reason),
        onReleased: () => {
          this.fdAccount.close();
          this.onReleased(this);
        },
        onDrain: () => this.updateReading(),
        onFdRefused: (error) => this.onFdRefused(error),
      });
    } catch (error) {
      this.fdAccount.close();
      throw error;
    }
  }

  /**
   * Aborted when the connection closes: waiting requests stop waiting. Made when a request
   * first needs it (a wait, a List or Watch): the process's first AbortController loads
   * Node's abort_controller module, which the first connection's accept paid before its
   * HelloReply at every start (~0.9 ms in a sampled profile of a cached start).
   */
  private get closedSignal(): AbortSignal {
    if (this.closedController === undefined) {
      this.closedController = new AbortController();
      // Each request in flight may listen for the close (a wait, a snapshot slot): a bounded
      // number, more than Node's default warning threshold of 10.
      setMaxListeners(this.ctx.limits.maxInFlight + 2, this.closedController.signal);
      if (this.socket.isClosed) this.closedController.abort();
    }
    return this.closedController.signal;
  }

  /** Requests of this connection still being worked on. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Handles the requests the client has already sent; the server calls it once it counts the connection. */
  readWaiting(): void {
    this.socket.readWaiting();
  }

  /**
   * Ends the connection (every fd queued for it closed); idempotent. Its socket may stay
   * open, shut down, while the peer still holds fds it has not received.
   */
  close(): void {
    this.socket.close();
  }

  /** close(), and the socket closed now even if the peer still holds unreceived fds (shutdown). */
  destroy(): void {
    this.socket.destroy();
  }

  private onPacket(packet: IncomingPacket): void {
    let request: ParsedRequest;
    try {
      if (packet.fds.length > 0 || packet.controlTruncated) {
        throw new ProtocolViolation(`client sent ${packet.fds.length || 'truncated'} fds`);
      }
      if (packet.truncated) throw new ProtocolViolation(`request larger than ${MAX_REQUEST_BYTES} bytes`);
      if (packet.data.length === 0) throw new ProtocolViolation('zero-length packet');
      request = decodeRequest(packet.data);
    } catch (error) {
      // Never ours to keep. Close off the loop: a client can send the last reference to a
      // device whose last close flushes or detaches it.
      for (const fd of packet.fds) this.ctx.opener.work.closeSent(this.peer.uid, fd);
      if (!(error instanceof ProtocolViolation)) throw error;
      this.log.warn({ reason: error.message }, 'protocol violation; dropping connection');
      this.socket.close();
      return;
    }
    void this.handle(request);
  }

  private async handle(request: ParsedRequest): Promise<void> {
    const started = process.hrtime.bigint();
    this.requestStarted();
    const trace: OpenTrace = {};
    let code = 'OK';
    let decision: 'allow' | 'deny' | 'error' = 'allow';
    try {
      await this.dispatch(request, trace);
    } catch (error) {
      if (error instanceof RequestCancelled) {
        code = 'CANCELLED'; // not a wire code: nobody is left to receive one
        decision = 'error';
        return;
      }
      const failure = error instanceof BrokerError ? error : this.internal(error);
      code = errorCodeName(failure.code);
      decision = failure.code === ErrorCode.ERROR_CODE_PERMISSION_DENIED ? 'deny' : 'error';
      this.socket.send(encodeError(request.id, failure));
    } finally {
      this.log.audit({
        op: request.kind, id: u64FromLong(request.id).toString(), open: request.kind === 'open' ? request.params : undefined,
        request: summarize(request), device: trace.device, rule: trace.rule, retried: trace.retried, decision, code,
        us: Number((process.hrtime.bigint() - started) / 1000n),
      });
      this.requestEnded(request.kind, code);
    }
  }

  private async dispatch(request: ParsedRequest, trace: OpenTrace): Promise<void> {
    switch (request.kind) {
      case 'invalid':
        throw request.error;
      case 'hello':
        if (request.protocolVersion !== PROTOCOL_VERSION) {
          throw unsupported(
            `protocol version ${request.protocolVersion} is not supported; this daemon speaks ${PROTOCOL_VERSION}`);
        }
        this.socket.send(encodeHello(request.id, this.ctx.serverVersion, FEATURES.filter((f) => f !== 'status' || this.ctx.status)));
        return;
      case 'status':
        if (this.ctx.status === undefined) throw unsupported('this server does not serve status requests');
        await this.ctx.registry.scanned(); // counts from the complete first scan, not part of it
        this.socket.send(encodeStatus(request.id, this.ctx.status(this.peer)));
        return;
      case 'open': {
        // Only a wait listens for the close.
        const signal = request.params.waitMs > 0 ? this.closedSignal : undefined;
        const opened = await this.ctx.opener.open(request.params, this.peer, trace, signal);
        // Step 5: one packet with the fd; our copy is closed whatever happens (PacketSocket).
        this.socket.send(encodeOpened(request.id, opened.device), opened.fd, opened.dispose);
        return;
      }
      case 'list': {
        const release = await this.snapshotSlot();
        try {
          await this.ctx.registry.indexed(); // the first scan: every bound disk, before the snapshot
          this.ctx.registry.handlePendingUevents(); // answer with every change the kernel already announced
          const builder = new DeviceListBuilder(request.id);
          const devices = listDevices(this.ctx.registry.disks(), request.includePartitions);
          const complete = await describeInTurns(this.ctx.turns, this.ctx.registry.sysfs, devices, (device) => {
            const packet = builder.add(device);
            return packet === undefined || this.socket.send(packet);
          }, this.closedSignal);
          if (!complete) throw new RequestCancelled();
          this.socket.send(builder.finish());
        } finally {
          release();
        }
        return;
      }
      case 'watch': {
        if (this.stopWatching !== undefined) throw invalidArgument('this connection is already watching');
        const { watchers } = this.ctx.quotas;
        const refusal = watchers.refusal(this.peer.uid);
        if (refusal !== undefined) throw resourceExhausted(refusal);
        watchers.take(this.peer.uid, 1);
        let stopHub: () => void = () => undefined;
        this.stopWatching = () => { // one watch per connection, even while it starts
          this.stopWatching = () => undefined;
          stopHub();
          watchers.give(this.peer.uid);
        };
        const release = await this.snapshotSlot();
        try {
          await this.ctx.registry.indexed(); // the first scan: every bound disk, before the snapshot
          this.ctx.registry.handlePendingUevents();
          stopHub = await this.ctx.watchHub.start(request.id, (packet) => this.socket.send(packet), () => this.close(), this.closedSignal);
        } finally {
          release();
        }
        if (this.socket.isClosed) stopHub(); // closed during the snapshot
        return;
      }
    }
  }

  /**
   * Waits for one of this uid's List and Watch snapshot slots (src/quotas.ts); throws
   * RequestCancelled when the connection closes first.
   */
  private async snapshotSlot(): Promise<() => void> {
    const release = await this.ctx.quotas.snapshots.acquire(this.peer.uid, this.closedSignal);
    if (release === undefined) throw new RequestCancelled();
    return release;
  }

  private onFdRefused(error: Error): void {
    if (this.fdRefusalLogged) return;
    this.fdRefusalLogged = true;
    this.log.warn({ err: error }, 'the kernel refuses to pass more fds for now (too many in flight for the daemon\'s user); holding them back');
  }

  private internal(error: unknown): BrokerError {
    this.log.error({ err: error }, 'internal error');
    return internal('internal error');
  }

  private requestStarted(): void {
    this.inFlight++;
    this.updateReading();
    if (this.inFlight === 1) this.ctx.onActivity();
  }

  private requestEnded(op: string, code: string): void {
    this.inFlight--;
    this.ctx.onRequestDone(op, code);
    this.updateReading();
    if (this.inFlight === 0) this.ctx.onActivity();
  }

  /**
   * Back-pressure: new requests are read only while fewer than maxInFlight are being
   * worked on, no response is waiting for the client to read it, and the client (and its
   * uid) may be sent one more fd. A client that sends faster than it reads is slowed down,
   * not dropped; one that stops reading altogether is dropped by the stall timeout, its
   * queued fds closed (docs/design.md, "Limits").
   */
  private updateReading(): void {
    if (this.inFlight < this.ctx.limits.maxInFlight && !this.socket.hasQueuedOutput && !this.socket.fdsHeldBack()) {
      this.socket.resumeReading();
    } else {
      this.socket.pauseReading();
    }
  }

  private onClose(reason: CloseReason): void {
    this.closedController?.abort();
    this.stopWatching?.();
    if (reason.kind === 'output-overflow' || reason.kind === 'output-stalled') {
      this.log.warn({ reason: reason.kind, unreceivedFds: this.socket.unreceivedFds }, 'client does not read its responses; dropped with its queued fds');
    }
    else if (reason.kind === 'error') this.log.warn({ err: reason.error }, 'connection failed');
  }
}

/** A request other than an open as the audit line shows it (an open's is the record's `open`). */
function summarize(request: ParsedRequest): Record<string, unknown> | undefined {
  switch (request.kind) {
    case 'hello':
      return { protocol_version: request.protocolVersion, client_name: request.clientName };
    case 'list':
      return { include_partitions: request.includePartitions };
    default:
      return undefined;
  }
}
