/**
 * A raw SOCK_SEQPACKET client for hostile tests: sends arbitrary bytes (with or without an
 * fd) through native.send and reads whatever comes back through native.recv, driven by a
 * Poller, without any framing logic of the daemon's own code in between. What the daemon
 * does to a hostile peer — answer, drop, refuse — is observed exactly as the kernel
 * delivers it.
 *
 * Ownership: a RawClient owns its socket fd and closes it exactly once (close() is
 * idempotent). fds that arrive with a packet are handed to whoever takes the packet
 * (next()); packets still unread at close() have their fds closed here.
 */
import {
  native, POLL_DISCONNECT, POLL_READABLE, POLL_WRITABLE, type Poller,
} from '../native/index.js';

/** One packet from the daemon, or the end of the connection. */
export type Incoming =
  | { kind: 'packet'; data: Buffer; fds: number[]; truncated: boolean }
  | { kind: 'eof' }
  | { kind: 'error'; code: string };

/** What one send did: delivered, or the daemon is gone (EPIPE, ECONNRESET ...). */
export type SendOutcome = { sent: true } | { sent: false; code: string };

/** Receive buffer: the largest Response is 65536 bytes (docs/design.md, "Wire contract"). */
const RECEIVE_SIZE = 65536;

/** One raw SOCK_SEQPACKET connection to the daemon (see the module comment). */
export class RawClient {
  readonly fd: number;
  private readonly poller: Poller;
  private readonly buffer = Buffer.allocUnsafe(RECEIVE_SIZE);
  private readonly inbox: Incoming[] = [];
  private waiters: Array<() => void> = [];
  private writeWaiters: Array<() => void> = [];
  private reading = true;
  /** libuv reported a socket error; polling has stopped, reading still drains the queue. */
  private failed = false;
  private socketError: string | undefined;
  private ended = false;
  private closed = false;

  /** Connects to `socketPath` (blocking connect, then non-blocking I/O). */
  constructor(socketPath: string) {
    this.fd = native.connectSeqpacket(socketPath, true);
    try {
      this.poller = new native.Poller(this.fd, (status, events) => this.onReady(status, events));
    } catch (error) {
      native.close(this.fd);
      throw error;
    }
    this.updatePolling();
  }

  /** True once the daemon ended the connection (EOF or a socket error was read). */
  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * Sends one packet (with `fd` in SCM_RIGHTS when >= 0; the caller keeps its fd). Waits
   * while the socket buffer is full. A failed send (peer gone) is an outcome, not a throw.
   */
  async send(data: Buffer, fd = -1): Promise<SendOutcome> {
    for (;;) {
      if (this.closed) return { sent: false, code: 'ECLOSED' };
      try {
        if (native.send(this.fd, data, fd)) return { sent: true };
      } catch (error) {
        return { sent: false, code: (error as { code?: string }).code ?? String(error) };
      }
      await new Promise<void>((resolve) => {
        this.writeWaiters.push(resolve);
        this.updatePolling();
      });
    }
  }

  /** Sends without waiting: 'again' when the socket buffer is full. */
  trySend(data: Buffer, fd = -1): SendOutcome | 'again' {
    if (this.closed) return { sent: false, code: 'ECLOSED' }; // our fd number may be reused by now
    try {
      return native.send(this.fd, data, fd) ? { sent: true } : 'again';
    } catch (error) {
      return { sent: false, code: (error as { code?: string }).code ?? String(error) };
    }
  }

  /**
   * The next packet or the end of the connection; 'timeout' after `timeoutMs`. The caller
   * owns the fds of a returned packet.
   */
  async next(timeoutMs = 5000): Promise<Incoming | 'timeout'> {
    if (this.inbox.length === 0 && !this.ended) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          resolve();
        };
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== wake);
          resolve();
        }, timeoutMs);
        this.waiters.push(wake);
      });
    }
    const item = this.inbox.shift();
    if (item !== undefined) return item;
    return this.ended ? { kind: 'eof' } : 'timeout';
  }

  /** Stops reading (the kernel keeps queueing until the daemon's sends block). */
  pauseReading(): void {
    this.reading = false;
    this.updatePolling();
  }

  /** Reads again after pauseReading(). */
  resumeReading(): void {
    this.reading = true;
    if (this.failed) this.drain();
    else this.updatePolling();
  }

  /** Closes the socket and the fds of every unread packet; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native.close(this.fd);
    for (const item of this.inbox.splice(0)) if (item.kind === 'packet') for (const fd of item.fds) native.close(fd);
    this.ended = true;
    this.wake();
    for (const w of this.writeWaiters.splice(0)) w();
  }

  private onReady(status: number, events: number): void {
    if (this.closed) return;
    if (status < 0) {
      // libuv reports a socket error (EPOLLERR, e.g. ECONNRESET after the daemon dropped us
      // with our requests unread) as a bad status and stops polling. Packets queued before
      // the error can still be read, and recv reports the error itself after them; a
      // waiting send retries and sees it too.
      this.failed = true;
      for (const w of this.writeWaiters.splice(0)) w();
      if (this.reading) this.drain();
      return;
    }
    if (events & POLL_WRITABLE) for (const w of this.writeWaiters.splice(0)) w();
    if (this.reading && events & (POLL_READABLE | POLL_DISCONNECT)) this.drain();
    this.updatePolling();
  }

  private drain(): void {
    let errorsInARow = 0;
    while (!this.ended) {
      let received;
      try {
        received = native.recv(this.fd, this.buffer);
        errorsInARow = 0;
      } catch (error) {
        // Linux reports a pending socket error (ECONNRESET: the daemon closed its end with
        // our packets unread) once, *before* the packets still queued for us: note it and
        // read on, so the packets come first and the error last, as they were sent.
        this.socketError ??= (error as { code?: string }).code ?? String(error);
        this.failed = true;
        if (++errorsInARow > 1) {
          this.finish({ kind: 'error', code: this.socketError });
          return;
        }
        continue;
      }
      if (received === null) {
        if (this.failed) this.finish({ kind: 'error', code: this.socketError ?? 'socket error' });
        break;
      }
      if (received.bytes === 0 && received.fds.length === 0 && !received.truncated) {
        this.finish(this.socketError === undefined ? { kind: 'eof' } : { kind: 'error', code: this.socketError });
        return;
      }
      this.inbox.push({
        kind: 'packet', data: Buffer.from(this.buffer.subarray(0, received.bytes)), fds: received.fds,
        truncated: received.truncated,
      });
    }
    this.wake();
  }

  private finish(last: Incoming): void {
    this.ended = true;
    this.inbox.push(last);
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private updatePolling(): void {
    if (this.closed || this.failed) return;
    const events = (this.reading && !this.ended ? POLL_READABLE | POLL_DISCONNECT : 0) |
      (this.writeWaiters.length > 0 ? POLL_WRITABLE : 0);
    if (events === 0) this.poller.stop();
    else this.poller.start(events);
  }
}
