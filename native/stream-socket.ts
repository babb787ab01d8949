/**
 * One connected SOCK_STREAM socket, for the Varlink front-end (docs/design.md, "Second
 * front-end: Varlink"): non-blocking reads driven by uv_poll that hand over whatever bytes
 * arrived (the caller frames them), and whole messages written in order, each with at most
 * one fd. A stream has no packet boundaries, so two things differ from PacketSocket:
 *
 * - partial writes: a message the kernel took only in part stays at the head of the queue
 *   with its offset and is continued when the socket is writable;
 * - an fd rides on the first byte of its message: the sendmsg that writes that byte carries
 *   the SCM_RIGHTS (a message with an fd is never started behind another one in the same
 *   sendmsg), and the continuation of a partly sent message carries none.
 *
 * Ownership, as for PacketSocket: the socket fd from construction until close(), which is
 * idempotent; an fd passed to send() from that call on — closed as soon as the kernel took
 * the first byte with it, or when the queue is discarded.
 */
import { closeOffLoop, native, POLL_DISCONNECT, POLL_READABLE, POLL_WRITABLE, type Poller } from './index.js';
import type { CloseReason } from './packet-socket.js';

export type { CloseReason };

/** Sizes and bounds of one StreamSocket. */
export interface StreamSocketLimits {
  /** Bytes read per recvmsg. */
  receiveSize: number;
  /** Messages, bytes and fds that may wait unsent before the socket is closed as stuck. */
  maxQueuedMessages: number;
  maxQueuedBytes: number;
  maxQueuedFds: number;
  /** How long queued output may wait without the peer taking any of it; 0: no limit. */
  stallTimeoutMs: number;
}

/** Bytes (and fds) that arrived in one read. `data` is only valid during the callback. */
export interface StreamChunk {
  data: Buffer;
  /** fds received with these bytes; the callee owns them and must close them. */
  fds: number[];
  /** MSG_CTRUNC: more fds were sent than fit, the kernel discarded the rest. */
  controlTruncated: boolean;
}

/** Callbacks of one StreamSocket. */
export interface StreamSocketEvents {
  onData(chunk: StreamChunk): void;
  /** Called once, after the socket fd and every queued fd have been closed. */
  onClose(reason: CloseReason): void;
  /** Called when queued output has all been sent. */
  onDrain?(): void;
}

interface QueuedMessage {
  data: Buffer;
  /** Bytes of data already sent. */
  offset: number;
  /** The fd still to send with the first byte, or -1. */
  fd: number;
  /** How that fd is closed if it is never sent. */
  dispose: (fd: number) => void;
}

/** How an fd that is never sent is closed by default: off the loop (a last close may block). */
const closeUnsent = (fd: number): void => void closeOffLoop(fd);

/** Reads per readiness callback before yielding to the loop, for fairness. */
const READ_BURST = 16;

export class StreamSocket {
  readonly fd: number;
  private readonly poller: Poller;
  private readonly receiveBuffer: Buffer;
  private readonly queue: QueuedMessage[] = [];
  private queuedBytes = 0;
  private queuedFds = 0;
  private reading = true;
  private closed = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(fd: number, private readonly limits: StreamSocketLimits, private readonly events: StreamSocketEvents) {
    this.fd = fd;
    this.receiveBuffer = Buffer.allocUnsafe(limits.receiveSize);
    this.poller = new native.Poller(fd, (status, ready) => this.onReady(status, ready));
    this.updatePolling();
  }

  /** True once close() has run (for any reason). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether output is waiting for the peer to read. */
  get hasQueuedOutput(): boolean {
    return this.queue.length > 0;
  }

  /**
   * Sends one whole message, with `fd` on its first byte when fd >= 0 (ownership of fd
   * passes here). What the kernel does not take now is queued; the socket closes when a
   * queue bound is exceeded or a send fails. Returns false when the socket is (now) closed.
   * An fd that is never sent goes to `dispose` (the daemon charges its close to its disk).
   */
  send(data: Buffer, fd = -1, dispose: (fd: number) => void = closeUnsent): boolean {
    if (this.closed || data.length === 0) {
      if (fd >= 0) dispose(fd);
      return !this.closed;
    }
    const message: QueuedMessage = { data, offset: 0, fd, dispose };
    if (this.queue.length === 0) {
      if (!this.write(message)) return false;
      if (message.offset === data.length) return true;
      this.armStallTimer();
    }
    this.queue.push(message);
    this.queuedBytes += data.length - message.offset;
    if (message.fd >= 0) this.queuedFds++;
    if (this.queue.length > this.limits.maxQueuedMessages || this.queuedBytes > this.limits.maxQueuedBytes ||
        this.queuedFds > this.limits.maxQueuedFds) {
      this.close({ kind: 'output-overflow' });
      return false;
    }
    this.updatePolling();
    return true;
  }

  /** Stops reading (back-pressure); the kernel buffers, then the peer blocks. */
  pauseReading(): void {
    if (!this.reading || this.closed) return;
    this.reading = false;
    this.updatePolling();
  }

  /** Resumes reading after pauseReading(). */
  resumeReading(): void {
    if (this.reading || this.closed) return;
    this.reading = true;
    this.updatePolling();
  }

  /** Closes the socket and every queued fd; idempotent. */
  close(reason: CloseReason = { kind: 'local' }): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.poller.close();
    for (const message of this.queue.splice(0)) {
      // Never delivered; ours may be the last reference to a device: off the event loop.
      if (message.fd >= 0) message.dispose(message.fd);
    }
    this.queuedBytes = 0;
    this.queuedFds = 0;
    native.close(this.fd);
    this.events.onClose(reason);
  }

  /**
   * One sendmsg of the rest of `message`, its fd attached when nothing of it has gone yet.
   * Advances message.offset; once any byte went, the fd went with it and our copy is
   * closed (message.fd = -1). Returns false when the socket failed (and is now closed);
   * message.fd is then still the caller's to dispose of — unless it is queued, in which
   * case close() already did.
   */
  private write(message: QueuedMessage): boolean {
    let sent: number;
    try {
      sent = native.sendStream(this.fd, message.data, message.offset, message.offset === 0 ? message.fd : -1);
    } catch (error) {
      const fd = message.fd;
      const queued = this.queue[0] === message;
      this.close({ kind: 'error', error: error as Error });
      if (!queued && fd >= 0) message.dispose(fd);
      return false;
    }
    if (sent > 0 && message.fd >= 0) {
      native.close(message.fd); // the peer holds its own copy now
      message.fd = -1;
    }
    message.offset += sent;
    return true;
  }

  private flushQueue(): void {
    let progress = false;
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      const hadFd = head.fd >= 0;
      const before = head.offset;
      if (!this.write(head)) return;
      this.queuedBytes -= head.offset - before;
      if (hadFd && head.fd < 0) this.queuedFds--;
      if (head.offset > before) progress = true;
      if (head.offset < head.data.length) break; // the kernel is full: wait for writability
      this.queue.shift();
    }
    if (this.closed) return;
    this.updatePolling();
    if (this.queue.length === 0) {
      clearTimeout(this.stallTimer);
      this.events.onDrain?.();
    } else if (progress) {
      this.armStallTimer();
    }
  }

  /** (Re)starts the clock of a peer that is not taking its output. */
  private armStallTimer(): void {
    if (this.limits.stallTimeoutMs <= 0) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => this.close({ kind: 'output-stalled' }), this.limits.stallTimeoutMs);
    this.stallTimer.unref();
  }

  private onReady(status: number, ready: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.close({ kind: 'error', error: new Error(`poll failed with libuv status ${status}`) });
      return;
    }
    if (ready & POLL_WRITABLE) this.flushQueue();
    if (!this.closed && this.reading && ready & (POLL_READABLE | POLL_DISCONNECT)) this.readBurst();
  }

  private readBurst(): void {
    for (let i = 0; i < READ_BURST && this.reading && !this.closed; i++) {
      let received;
      try {
        received = native.recv(this.fd, this.receiveBuffer);
      } catch (error) {
        this.close({ kind: 'error', error: error as Error });
        return;
      }
      if (received === null) return;
      if (received.bytes === 0 && received.fds.length === 0) {
        this.close({ kind: 'peer-closed' });
        return;
      }
      this.events.onData({
        data: this.receiveBuffer.subarray(0, received.bytes),
        fds: received.fds,
        controlTruncated: received.controlTruncated,
      });
    }
  }

  private updatePolling(): void {
    if (this.closed) return;
    const events = (this.reading ? POLL_READABLE | POLL_DISCONNECT : 0) | (this.queue.length > 0 ? POLL_WRITABLE : 0);
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
