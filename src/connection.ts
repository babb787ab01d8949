/**
 * One client connection: packets in, requests dispatched, responses out, one audit line
 * per request. Two kinds of failure, handled differently: a protocol violation (bad
 * packet, fds from the client) is logged once and costs the client its connection; an
 * operational failure becomes an Error response and the connection goes on.
 */
import { closeOffLoop } from '../native/index.js';
import { describeGradually, listDevices } from './device-info.js';
import { BrokerError, internal, invalidArgument, resourceExhausted, unsupported } from './errors.js';
import type { Logger } from './log.js';
import { RequestCancelled, type Opener, type OpenTrace } from './opener.js';
import { PacketSocket, type CloseReason, type IncomingPacket } from '../native/packet-socket.js';
import type { Peer } from './policy/index.js';
import {
  decodeRequest, DeviceListBuilder, encodeError, encodeHello, encodeOpened, ProtocolViolation, type ParsedRequest,
} from './protocol.js';
import type { Registry } from './registry.js';
import type { WatchHub } from './watch-hub.js';
import { ErrorCode, errorCodeName, MAX_REQUEST_BYTES, PROTOCOL_VERSION } from '../proto/contract.js';

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
  readonly serverVersion: string;
  /** Called when the connection goes from idle to busy or back, and when it closes. */
  readonly onActivity: () => void;
  /** Called once per request answered (or abandoned), for the served-requests count. */
  readonly onRequestDone: () => void;
}

export class Connection {
  private readonly socket: PacketSocket;
  private readonly log: Logger;
  private inFlight = 0;
  /** Aborted when the connection closes: waiting requests stop waiting. */
  private readonly closed = new AbortController();
  private stopWatching: (() => void) | undefined;

  /**
   * Takes ownership of a connected socket fd whose peer credentials were read at accept.
   * `onClosed` runs once, after the socket is closed.
   */
  constructor(fd: number, readonly peer: Peer, private readonly ctx: ConnectionContext, private readonly onClosed: (c: Connection) => void) {
    this.log = ctx.log.child({ peer: { uid: peer.uid, gid: peer.gid, pid: peer.pid } });
    const { maxQueuedPackets, maxQueuedBytes, maxQueuedFds, stallTimeoutMs } = ctx.limits;
    this.socket = new PacketSocket(fd, { receiveSize: MAX_REQUEST_BYTES, maxQueuedPackets, maxQueuedBytes, maxQueuedFds, stallTimeoutMs }, {
      onPacket: (packet) => this.onPacket(packet),
      onClose: (reason) => this.onClose(reason),
      onDrain: () => this.updateReading(),
    });
  }

  /** Requests of this connection still being worked on. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Closes the connection (and every fd queued for it); idempotent. */
  close(): void {
    this.socket.close();
  }

  private onPacket(packet: IncomingPacket): void {
    let request: ParsedRequest;
    try {
      if (packet.fds.length > 0 || packet.controlTruncated) {
        throw new ProtocolViolation(`client sent ${packet.fds.length || 'truncated'} fds`);
      }
      if (packet.truncated) throw new ProtocolViolation(`request larger than ${MAX_REQUEST_BYTES} bytes`);
      request = decodeRequest(packet.data);
    } catch (error) {
      // Never ours to keep. Close off the loop: a client can send the last reference to a
      // device whose last close flushes or detaches it.
      for (const fd of packet.fds) void closeOffLoop(fd);
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
      this.log.info({
        op: request.kind, id: request.id.toString(), request: summarize(request), device: trace.device,
        rule: trace.rule, retried: trace.retried, decision, code,
        us: Number((process.hrtime.bigint() - started) / 1000n),
      }, 'audit');
      this.requestEnded();
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
        this.socket.send(encodeHello(request.id, this.ctx.serverVersion, ['open', 'list', 'watch', 'wait']));
        return;
      case 'open': {
        const opened = await this.ctx.opener.open(request.params, this.peer, trace, this.closed.signal);
        // Step 5: one packet with the fd; our copy is closed whatever happens (PacketSocket).
        this.socket.send(encodeOpened(request.id, opened.device), opened.fd);
        return;
      }
      case 'list': {
        await this.ctx.registry.indexed(); // the first scan: every bound disk, before the snapshot
        this.ctx.registry.handlePendingUevents(); // answer with every change the kernel already announced
        const builder = new DeviceListBuilder(request.id);
        const devices = listDevices(this.ctx.registry.disks(), request.includePartitions);
        for await (const device of describeGradually(this.ctx.registry.sysfs, devices)) {
          const packet = builder.add(device);
          if (packet !== undefined && !this.socket.send(packet)) return;
        }
        this.socket.send(builder.finish());
        return;
      }
      case 'watch':
        if (this.stopWatching !== undefined) throw invalidArgument('this connection is already watching');
        if (this.ctx.watchHub.count >= this.ctx.watchHub.maxWatchers) {
          throw resourceExhausted(`too many watchers (limit ${this.ctx.watchHub.maxWatchers})`);
        }
        this.stopWatching = () => undefined; // one watch per connection, even while it starts
        await this.ctx.registry.indexed();
        this.ctx.registry.handlePendingUevents();
        this.stopWatching = await this.ctx.watchHub.start(request.id, (packet) => this.socket.send(packet), () => this.close());
        if (this.socket.isClosed) this.stopWatching(); // closed during the snapshot
        return;
    }
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

  private requestEnded(): void {
    this.inFlight--;
    this.ctx.onRequestDone();
    this.updateReading();
    if (this.inFlight === 0) this.ctx.onActivity();
  }

  /**
   * Back-pressure: new requests are read only while fewer than maxInFlight are being
   * worked on and no response is waiting for the client to read it. A client that sends
   * faster than it reads is slowed down, not dropped; one that stops reading altogether is
   * dropped by the stall timeout, its queued fds closed.
   */
  private updateReading(): void {
    if (this.inFlight < this.ctx.limits.maxInFlight && !this.socket.hasQueuedOutput) this.socket.resumeReading();
    else this.socket.pauseReading();
  }

  private onClose(reason: CloseReason): void {
    this.closed.abort();
    this.stopWatching?.();
    if (reason.kind === 'output-overflow' || reason.kind === 'output-stalled') {
      this.log.warn({ reason: reason.kind }, 'client does not read its responses; dropped with its queued fds');
    }
    else if (reason.kind === 'error') this.log.warn({ err: reason.error }, 'connection failed');
    this.onClosed(this);
  }
}

/** The request as the audit line shows it (ids and diskseqs as decimal strings). */
function summarize(request: ParsedRequest): Record<string, unknown> | undefined {
  switch (request.kind) {
    case 'open': {
      const p = request.params;
      return {
        diskseq: p.diskseq.toString(), partition: p.partition, access: p.access, exclusive: p.exclusive,
        direct: p.direct, nonblock: p.nonblock, sync: p.sync, dsync: p.dsync, wait_ms: p.waitMs,
        expect: p.expect.size > 0 ? Object.fromEntries(p.expect) : undefined,
      };
    }
    case 'hello':
      return { protocol_version: request.protocolVersion, client_name: request.clientName };
    case 'list':
      return { include_partitions: request.includePartitions };
    default:
      return undefined;
  }
}
