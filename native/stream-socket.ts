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
 * The daemon's side counts the fds the peer has not received, as PacketSocket does
 * (docs/design.md, "Limits: fds in flight"): every write is booked from SIOCOUTQ
 * (FdsInFlight), a message whose fd the account refuses waits at the head of the queue,
 * and a closed socket whose peer still has fds unreceived is shut down, not closed, until
 * the peer takes or drops them (onReleased).
 *
 * Ownership, as for PacketSocket: the socket fd from construction until it is released
 * (close(), or once the peer has its fds, or destroy()); an fd passed to send() from that
 * call on — closed as soon as the kernel took the first byte with it, or when the queue is
 * discarded.
 */
import { native, POLL_DISCONNECT, POLL_READABLE, POLL_WRITABLE } from './index.js';
import { closeUnsent, QueuedSocket, receiveBuffer, type CloseReason, type OutputEvents, type OutputLimits, type QueuedOutput } from './queued-socket.js';

export type { CloseReason };

/** Sizes and bounds of one StreamSocket (the shared output bounds in OutputLimits). */
export interface StreamSocketLimits extends OutputLimits {
  /** Bytes read per recvmsg. */
  receiveSize: number;
  /** Messages that may wait unsent before the socket is closed as stuck. */
  maxQueuedMessages: number;
}

/** Bytes (and fds) that arrived in one read. `data` is only valid during the callback. */
export interface StreamChunk {
  data: Buffer;
  /** fds received with these bytes; the callee owns them and must close them. */
  fds: number[];
  /** MSG_CTRUNC: more fds were sent than fit, the kernel discarded the rest. */
  controlTruncated: boolean;
}

/** Callbacks of one StreamSocket (the shared ones in OutputEvents). */
export interface StreamSocketEvents extends OutputEvents {
  onData(chunk: StreamChunk): void;
}

/** One message of output: how far it went, and its fd until the byte that carries it is sent. */
interface QueuedMessage extends QueuedOutput {
  /** Bytes of data already sent. */
  offset: number;
}

/** Reads per readiness callback before yielding to the loop, for fairness. */
const READ_BURST = 16;

export class StreamSocket extends QueuedSocket<QueuedMessage, StreamSocketLimits, StreamSocketEvents> {
  private readonly receiveBuffer: Buffer;

  constructor(fd: number, limits: StreamSocketLimits, events: StreamSocketEvents) {
    super(fd, limits, limits.maxQueuedMessages, events);
    this.receiveBuffer = receiveBuffer(limits.receiveSize);
    this.updatePolling();
  }

  /**
   * Sends one whole message, with `fd` on its first byte when fd >= 0 (ownership of fd
   * passes here). What the kernel does not take now, or what waits for the account, is
   * queued; the socket closes when a queue bound is exceeded or a send fails. Returns false
   * when the socket is (now) closed. An fd that is never sent goes to `dispose` (the daemon
   * charges its close to its disk).
   */
  send(data: Buffer, fd = -1, dispose: (fd: number) => void = closeUnsent): boolean {
    if (this.closed || data.length === 0) {
      if (fd >= 0) dispose(fd);
      return !this.closed;
    }
    const message: QueuedMessage = { data, offset: 0, fd, dispose };
    if (this.mayWriteNow(fd)) {
      if (!this.write(message)) return false;
      if (message.offset === data.length) return true;
    }
    return this.enqueue(message, data.length - message.offset);
  }

  /**
   * One sendmsg of the rest of `message`, its fd attached when nothing of it has gone yet.
   * Advances message.offset; once any byte went, the fd went with it and our copy is
   * closed (message.fd = -1). ETOOMANYREFS (the kernel refuses the fd for now) sends
   * nothing and holds the message back. Returns false when the socket failed (and is now
   * closed); message.fd is then still the caller's to dispose of — unless it is queued, in
   * which case close() already did.
   */
  private write(message: QueuedMessage): boolean {
    const fd = message.offset === 0 ? message.fd : -1;
    let sent: number;
    try {
      sent = this.inFlight === undefined ? native.sendStream(this.fd, message.data, message.offset, fd)
        : this.inFlight.sendStream(message.data, message.offset, fd);
    } catch (error) {
      const queued = this.queue[0] === message;
      if (this.sendFailed(error, fd >= 0)) return true;
      if (!queued && message.fd >= 0) message.dispose(message.fd);
      return false;
    }
    if (sent > 0 && message.fd >= 0) {
      native.close(message.fd); // the peer holds its own copy now
      message.fd = -1;
    }
    message.offset += sent;
    return true;
  }

  protected flushQueue(): void {
    let progress = false;
    this.heldBack = false;
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      const hadFd = head.fd >= 0;
      if (hadFd && !this.admitsFd()) {
        this.heldBack = true;
        break;
      }
      const before = head.offset;
      if (!this.write(head)) return;
      this.queuedBytes -= head.offset - before;
      if (hadFd && head.fd < 0) this.queuedFds--;
      if (head.offset > before) progress = true;
      if (head.offset < head.data.length) break; // the kernel is full (or refused the fd): wait
      this.queue.shift();
    }
    this.flushed(progress);
  }

  protected onReady(status: number, ready: number): void {
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

  /**
   * Reading: readable and peer shut-down. Writable while output waits for buffer space
   * (not while it waits for the account: the socket is writable then, and polling for it
   * would spin). No POLLPRI trick as on SEQPACKET: on a stream it also means out-of-band
   * data, which a client could send to make the daemon spin; a peer that hangs up while
   * not read is noticed by the account's timer (SIOCOUTQ falls to 0) or the stall clock.
   */
  protected updatePolling(): void {
    if (this.closed) return;
    const events = (this.reading ? POLL_READABLE | POLL_DISCONNECT : 0) | (this.queue.length > 0 && !this.heldBack ? POLL_WRITABLE : 0);
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
