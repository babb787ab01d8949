/**
 * One Varlink connection (docs/design.md, "Second front-end: Varlink"): bytes in, cut into
 * NUL-terminated messages, calls answered strictly one after the other — Varlink has no
 * request ids, so replies go back in call order and nothing else is answered while a
 * `more` stream runs; later calls wait their turn (bounded) — and one audit line per call,
 * marked `via: "varlink"`, in the same shape as the SEQPACKET connection's.
 *
 * As on the SEQPACKET socket, a protocol violation (not JSON, not an object, a message over
 * the size bound or left unfinished, fds from the client) is logged once and costs the
 * client its connection; an operational failure is an error reply and the connection goes
 * on. And as there, the fds sent and not yet received are counted in the uid's ledger
 * (docs/design.md, "Limits: fds in flight"): while a reply waits unread or the account
 * holds fds back, no call is started and none is read.
 */
import { StreamSocket, type CloseReason, type StreamChunk } from '../../native/stream-socket.js';
import type { Linked } from '../insertion-list.js';
import type { Logger } from '../log.js';
import { RequestCancelled } from '../opener.js';
import type { Peer } from '../policy/index.js';
import type { ConnectionFdAccount, Quotas } from '../quotas.js';
import { auditCode, expectedMore, interfaceNotFound, invalidParameter, methodNotFound } from './errors.js';
import { MessageFramer } from './framing.js';
import { findMethod, invalidParameter as badParameter } from './idl.js';
import { INTERFACES } from './interfaces.js';
import { encodeError, encodeReply, parseCall, ProtocolViolation, VarlinkError, type VarlinkCall } from './message.js';
import { describeInterface, serviceInfo } from './service.js';
import type { AcquireAudit, StorageProvider } from './storage-provider.js';

/** Per-connection bounds. */
export interface VarlinkLimits {
  /** The longest message a client may send (its NUL not counted). */
  maxMessageBytes: number;
  /** Calls read and waiting for their turn; beyond it the connection is not read. */
  maxPendingCalls: number;
  /** Output that may wait for a client that does not read, before it is dropped. */
  maxQueuedMessages: number;
  maxQueuedBytes: number;
  maxQueuedFds: number;
  /**
   * How long output may wait unread, and how long a message may stay unfinished while the
   * connection is read, before the client is dropped.
   */
  stallTimeoutMs: number;
}

/** What every Varlink connection shares with its listener. */
export interface VarlinkContext {
  readonly provider: StorageProvider;
  /** The per-uid shares both front-ends count in: here, ListVolumes' snapshot slots and fds in flight. */
  readonly quotas: Quotas;
  readonly log: Logger;
  readonly limits: VarlinkLimits;
  readonly serverVersion: string;
  /** Called when the connection goes from idle to busy or back. */
  readonly onActivity: () => void;
  /** Called once per call answered (or abandoned). */
  readonly onRequestDone: (op: string, code: string) => void;
}

/** The protocol violation log line, the same as the SEQPACKET connection's. */
const VIOLATION = 'protocol violation; dropping connection';

export class VarlinkConnection implements Linked<VarlinkConnection> {
  /** The listener's list of connections links its members here (src/insertion-list.ts). */
  prev: VarlinkConnection | undefined = undefined;
  next: VarlinkConnection | undefined = undefined;
  private readonly socket: StreamSocket;
  private readonly framer: MessageFramer;
  private readonly log: Logger;
  private readonly fdAccount: ConnectionFdAccount;
  private fdRefusalLogged = false;
  /** Messages read and not yet handled, and (last) the violation that ends the connection. */
  private readonly pending: (Buffer | string)[] = [];
  private working = false;
  /** A violation is queued: nothing more is read. */
  private doomed = false;
  private partialTimer: NodeJS.Timeout | undefined;
  /** Aborted when the connection closes: a waiting call stops waiting. */
  private readonly closed = new AbortController();

  /**
   * Takes ownership of a connected stream socket whose peer credentials were read at
   * accept. `onReleased` runs once, after the socket fd is closed: when the connection
   * closes, or later if the peer still had fds unreceived then (docs/design.md, "Limits").
   */
  constructor(fd: number, readonly peer: Peer, private readonly ctx: VarlinkContext, private readonly onReleased: (c: VarlinkConnection) => void) {
    this.log = ctx.log.child({ peer: { uid: peer.uid, gid: peer.gid, pid: peer.pid } });
    const { maxMessageBytes, maxQueuedMessages, maxQueuedBytes, maxQueuedFds, stallTimeoutMs } = ctx.limits;
    this.framer = new MessageFramer(maxMessageBytes);
    // The same ledger as the SEQPACKET connections': one count per uid, whichever way in.
    this.fdAccount = ctx.quotas.unreceivedFds.account(peer.uid, () => this.socket.refreshUnreceived());
    try {
      this.socket = new StreamSocket(fd, {
        receiveSize: Math.min(maxMessageBytes + 1, 64 * 1024), maxQueuedMessages, maxQueuedBytes, maxQueuedFds, stallTimeoutMs,
        unreceivedFds: this.fdAccount,
      }, {
        onData: (chunk) => this.onData(chunk),
        onClose: (reason) => this.onClose(reason),
        onReleased: () => {
          this.fdAccount.close();
          this.onReleased(this);
        },
        onDrain: () => this.pump(),
        onFdRefused: (error) => this.onFdRefused(error),
      });
    } catch (error) {
      this.fdAccount.close();
      throw error;
    }
  }

  /** Whether a call of this connection is being worked on. */
  get busy(): boolean {
    return this.working;
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

  private onData(chunk: StreamChunk): void {
    if (this.doomed) return;
    if (chunk.fds.length > 0 || chunk.controlTruncated) {
      // Never ours to keep; off the loop: it may be the last reference to a device.
      for (const fd of chunk.fds) this.ctx.provider.closeSent(this.peer.uid, fd);
      // The kernel ends a read right after the bytes that carried fds, gluing earlier ones
      // in front: the fds came with the last message that starts in this read. What came
      // before it is still answered.
      let cut = 0;
      for (let nul = chunk.data.indexOf(0); nul >= 0 && nul < chunk.data.length - 1; nul = chunk.data.indexOf(0, nul + 1)) cut = nul + 1;
      if (cut > 0) this.take(chunk.data.subarray(0, cut));
      if (!this.doomed) this.doom(`client sent ${chunk.fds.length || 'truncated'} fds`);
      return;
    }
    this.take(chunk.data);
  }

  /** Frames bytes that arrived and queues the messages (and a violation) they complete. */
  private take(data: Buffer): void {
    const { messages, violation } = this.framer.push(data);
    this.pending.push(...messages);
    if (violation !== undefined) this.doom(violation.message);
    else this.pump();
  }

  /**
   * A violation in the byte stream: the calls complete before it are still answered, in
   * order, then the connection is dropped; nothing after it is read.
   */
  private doom(reason: string): void {
    this.doomed = true;
    this.pending.push(reason);
    this.pump();
  }

  /**
   * Starts the next call when none runs and no reply waits for the client (in the queue, or
   * for its account to let one more fd go: a call started then would open a device only to
   * hold its fd here), and decides whether to read on.
   */
  private pump(): void {
    while (!this.working && this.pending.length > 0 && !this.socket.isClosed && !this.outputWaits()) {
      const next = this.pending.shift()!;
      if (typeof next === 'string') {
        this.violation(next);
        return;
      }
      let call: VarlinkCall;
      try {
        call = parseCall(next);
      } catch (error) {
        if (!(error instanceof ProtocolViolation)) throw error;
        this.violation(error.message);
        return;
      }
      this.working = true;
      void this.handle(call).finally(() => {
        this.working = false;
        this.pump();
      });
    }
    this.updateReading();
  }

  private async handle(call: VarlinkCall): Promise<void> {
    const started = process.hrtime.bigint();
    this.ctx.onActivity();
    const audit: AcquireAudit = {};
    let code = 'OK';
    let decision = 'allow';
    let error: string | undefined;
    try {
      await this.dispatch(call, audit);
      if (call.oneway) {
        code = 'NOT_PERFORMED'; // a oneway call gets no reply, so nothing is done for it
        decision = 'none';
      }
    } catch (thrown) {
      if (thrown instanceof RequestCancelled) {
        code = 'CANCELLED';
        decision = 'error';
        return;
      }
      const failure = thrown instanceof VarlinkError ? thrown : this.internal(thrown);
      code = auditCode(failure);
      error = failure.error;
      decision = code === 'PERMISSION_DENIED' && error.endsWith('.PermissionDenied') ? 'deny' : 'error';
      if (!call.oneway) this.socket.send(encodeError(failure));
    } finally {
      this.log.info({
        op: opOf(call), via: 'varlink', method: call.method, oneway: call.oneway || undefined,
        request: summarize(call, audit), device: audit.device, rule: audit.rule, retried: audit.retried,
        decision, code, error, us: Number((process.hrtime.bigint() - started) / 1000n),
      }, 'audit');
      this.ctx.onRequestDone(opOf(call), code);
      this.ctx.onActivity();
    }
  }

  /** Checks the call against the IDL, then runs it; every refusal is thrown as a VarlinkError. */
  private async dispatch(call: VarlinkCall, audit: AcquireAudit): Promise<void> {
    const iface = INTERFACES.get(call.interfaceName);
    if (iface === undefined) throw interfaceNotFound(call.interfaceName);
    const method = findMethod(iface, call.memberName);
    if (method === undefined) throw methodNotFound(call.method);
    if (method.requiresMore && !call.more && !call.oneway) throw expectedMore();
    if (call.upgrade) throw invalidParameter('upgrade'); // no method here hands its connection over
    const bad = badParameter(iface, method, call.parameters);
    if (bad !== undefined) throw invalidParameter(bad);
    if (call.oneway) return;
    const p = call.parameters;
    switch (call.method) {
      case 'org.varlink.service.GetInfo':
        this.socket.send(encodeReply(serviceInfo(this.ctx.serverVersion)));
        return;
      case 'org.varlink.service.GetInterfaceDescription':
        this.socket.send(encodeReply(describeInterface(p.interface as string)));
        return;
      case 'io.systemd.StorageProvider.Acquire': {
        const { reply, fd, dispose } = await this.ctx.provider.acquire(p, this.peer, audit, this.closed.signal);
        // docs/design.md, "Open and verify", step 5: the fd rides on the reply's first byte;
        // our copy is closed once sent, or with the queue (StreamSocket).
        this.socket.send(encodeReply(reply), fd, dispose);
        return;
      }
      case 'io.systemd.StorageProvider.ListVolumes': {
        // A List by another name: one of this uid's snapshot slots, described in fair turns.
        const release = await this.ctx.quotas.snapshots.acquire(this.peer.uid, this.closed.signal);
        if (release === undefined) return; // the connection closed while it waited
        try {
          await this.stream(this.ctx.provider.listVolumes(p, this.closed.signal));
        } finally {
          release();
        }
        return;
      }
      case 'io.systemd.StorageProvider.ListTemplates':
        this.ctx.provider.listTemplates();
        return;
    }
    throw methodNotFound(call.method);
  }

  /** Sends a stream of replies, each but the last with continues: true. */
  private async stream(replies: AsyncGenerator<Record<string, unknown>>): Promise<void> {
    let previous: Record<string, unknown> | undefined;
    for await (const reply of replies) {
      if (previous !== undefined && !this.socket.send(encodeReply(previous, true))) return;
      previous = reply;
    }
    if (previous !== undefined) this.socket.send(encodeReply(previous));
  }

  private internal(error: unknown): VarlinkError {
    this.log.error({ err: error }, 'internal error');
    return new VarlinkError('org.diskseqd.Internal', { code: 'INTERNAL', message: 'internal error', osErrno: 0 }, 'INTERNAL');
  }

  private violation(reason: string): void {
    this.log.warn({ reason, via: 'varlink' }, VIOLATION);
    this.socket.close();
  }

  /** Whether output waits for the client: queued, or fds held back by its account (which then runs the stall clock). */
  private outputWaits(): boolean {
    return this.socket.hasQueuedOutput || this.socket.fdsHeldBack();
  }

  /**
   * Back-pressure: read while fewer than maxPendingCalls calls wait and no reply waits for
   * the client to read it (nor may wait for its account). A client that sends faster than
   * it reads is slowed down; one that stops reading is dropped by the stall timeout, its
   * queued fds closed and its socket kept until it takes or drops those it was sent. While
   * the connection is read, an unfinished message has stallTimeoutMs to be finished.
   */
  private updateReading(): void {
    const read = !this.doomed && this.pending.length < this.ctx.limits.maxPendingCalls && !this.outputWaits();
    if (read) this.socket.resumeReading();
    else this.socket.pauseReading();
    if (read && this.framer.hasPartial) {
      if (this.partialTimer === undefined && this.ctx.limits.stallTimeoutMs > 0) {
        this.partialTimer = setTimeout(() => this.violation(`message unfinished after ${this.ctx.limits.stallTimeoutMs} ms`), this.ctx.limits.stallTimeoutMs);
        this.partialTimer.unref();
      }
    } else {
      clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    }
  }

  private onClose(reason: CloseReason): void {
    clearTimeout(this.partialTimer);
    this.closed.abort();
    // Calls read but not started (the client closed, or was dropped, first): abandoned,
    // and audited as such, so that every call the daemon read has its line.
    for (const next of this.pending.splice(0)) {
      if (typeof next === 'string') continue;
      try {
        const call = parseCall(next);
        this.log.info({ op: opOf(call), via: 'varlink', method: call.method, oneway: call.oneway || undefined, decision: 'error', code: 'CANCELLED', us: 0 }, 'audit');
      } catch {
        // Not a call: nothing was asked.
      }
    }
    if (reason.kind === 'output-overflow' || reason.kind === 'output-stalled') {
      this.log.warn({ reason: reason.kind, via: 'varlink', unreceivedFds: this.socket.unreceivedFds },
        'client does not read its responses; dropped with its queued fds');
    } else if (reason.kind === 'error') {
      this.log.warn({ err: reason.error, via: 'varlink' }, 'connection failed');
    }
  }

  private onFdRefused(error: Error): void {
    if (this.fdRefusalLogged) return;
    this.fdRefusalLogged = true;
    this.log.warn({ err: error, via: 'varlink' }, 'the kernel refuses to pass more fds for now (too many in flight for the daemon\'s user); holding them back');
  }
}

/** The audit line's `op`, in the SEQPACKET connection's words where there is one. */
function opOf(call: VarlinkCall): string {
  switch (call.method) {
    case 'io.systemd.StorageProvider.Acquire': return 'open';
    case 'io.systemd.StorageProvider.ListVolumes': return 'list';
    case 'io.systemd.StorageProvider.ListTemplates': return 'list-templates';
    case 'org.varlink.service.GetInfo': return 'info';
    case 'org.varlink.service.GetInterfaceDescription': return 'describe';
    default: return 'unknown';
  }
}

/** The call as the audit line shows it. */
function summarize(call: VarlinkCall, audit: AcquireAudit): Record<string, unknown> | undefined {
  const p = call.parameters;
  switch (opOf(call)) {
    case 'open':
      return {
        name: typeof p.name === 'string' ? p.name.slice(0, 64) : undefined, diskseq: audit.diskseq, partition: audit.partition,
        access: audit.access, readOnly: p.readOnly, fallback: audit.fallback,
      };
    case 'list':
    case 'list-templates':
      return typeof p.matchName === 'string' ? { matchName: p.matchName.slice(0, 64) } : undefined;
    case 'describe':
      return typeof p.interface === 'string' ? { interface: p.interface.slice(0, 64) } : undefined;
    default:
      return undefined;
  }
}
