/**
 * The Varlink client of tests and benchmarks: calls over a SOCK_STREAM socket through the
 * shared StreamSocket, NUL framing written out here (not the daemon's MessageFramer), fds
 * from SCM_RIGHTS attached to the reply they arrived with. Also sends raw bytes, with or
 * without an fd, for hostile tests. The Go client in test/go/ is the independent one; it
 * cannot receive fds, this one can.
 *
 * Replies come back in call order (Varlink has no ids): each call() waits for its replies
 * after those of earlier calls. Which reply an fd belongs to: the daemon sends a reply
 * with an fd in a sendmsg of its own that starts at the reply's first byte, and the kernel
 * ends a stream read right after the bytes that came with fds (it may glue earlier bytes
 * in front). So the fds of one read belong to the last message that starts in it.
 *
 * Ownership: fds of a reply belong to whoever awaits it; fds nobody awaits are closed here
 * and counted in strayFds.
 */
import { native } from '../native/index.js';
import { StreamSocket, type CloseReason } from '../native/stream-socket.js';

/** One reply or error as it arrived. */
export interface VarlinkReply {
  parameters: Record<string, unknown>;
  continues: boolean;
  /** Set on an error reply: its qualified name. */
  error?: string;
  fds: number[];
}

/** Flags of one call. */
export interface CallFlags {
  more?: boolean;
  oneway?: boolean;
  upgrade?: boolean;
}

interface Waiter {
  replies: VarlinkReply[];
  more: boolean;
  resolve(replies: VarlinkReply[]): void;
  reject(error: Error): void;
}

export class VarlinkClient {
  private readonly socket: StreamSocket;
  private readonly waiters: Waiter[] = [];
  private chunks: Buffer[] = [];
  /** Messages completed so far, and fds waiting for the message of that number. */
  private messages = 0;
  private readonly fdsOf = new Map<number, number[]>();
  private closeReason: CloseReason | undefined;
  private readonly closeWaiters: ((reason: CloseReason) => void)[] = [];
  /** fds that arrived with no reply awaiting them (closed). */
  strayFds = 0;

  private constructor(fd: number) {
    this.socket = new StreamSocket(fd, {
      receiveSize: 256 * 1024, maxQueuedMessages: 100_000, maxQueuedBytes: 64 << 20, maxQueuedFds: 16, stallTimeoutMs: 0,
    }, {
      onData: (chunk) => this.onData(chunk.data, chunk.fds),
      onClose: (reason) => this.onClose(reason),
    });
  }

  /** Connects to a Varlink socket (a blocking connect; fine for tests). */
  static connect(socketPath: string): VarlinkClient {
    return new VarlinkClient(native.connectStream(socketPath, true));
  }

  /** Takes over a connected stream socket fd (owned from here on), e.g. one left unread for a while. */
  static adopt(fd: number): VarlinkClient {
    return new VarlinkClient(fd);
  }

  /** Why the connection closed, once it has. */
  get closed(): CloseReason | undefined {
    return this.closeReason;
  }

  /** Resolves with the close reason once the connection closes. */
  whenClosed(): Promise<CloseReason> {
    if (this.closeReason !== undefined) return Promise.resolve(this.closeReason);
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** Sends bytes as they are (with an fd on the first byte when fd >= 0; the fd passes here). */
  sendRaw(bytes: Uint8Array, fd = -1): boolean {
    return this.socket.send(Buffer.from(bytes), fd);
  }

  /**
   * Calls `method`; resolves with its replies (several for a `more` call, none for a
   * `oneway` one — it resolves once sent), the last without `continues`. Rejects when the
   * connection closes first.
   */
  call(method: string, parameters?: Record<string, unknown> | null, flags: CallFlags = {}): Promise<VarlinkReply[]> {
    const message: Record<string, unknown> = { method };
    if (parameters !== undefined) message.parameters = parameters;
    for (const flag of ['more', 'oneway', 'upgrade'] as const) if (flags[flag]) message[flag] = true;
    if (!this.sendRaw(Buffer.from(`${JSON.stringify(message)}\0`))) return Promise.reject(new Error('connection closed'));
    if (flags.oneway) return Promise.resolve([]);
    return new Promise((resolve, reject) => this.waiters.push({ replies: [], more: flags.more === true, resolve, reject }));
  }

  /**
   * For calls sent raw (sendRaw): resolves with the replies of the next `calls` calls that
   * get replies, one array per call, in order.
   */
  expectReplies(calls: number): Promise<VarlinkReply[][]> {
    return Promise.all(Array.from({ length: calls }, () => new Promise<VarlinkReply[]>((resolve, reject) => {
      this.waiters.push({ replies: [], more: true, resolve, reject });
    })));
  }

  /** A call with one reply; resolves with it (an error reply too). */
  async call1(method: string, parameters?: Record<string, unknown> | null, flags: CallFlags = {}): Promise<VarlinkReply> {
    const replies = await this.call(method, parameters, flags);
    return replies[replies.length - 1]!;
  }

  /** Closes the connection (idempotent); pending calls reject. */
  close(): void {
    this.socket.close();
  }

  private onData(data: Buffer, fds: number[]): void {
    if (fds.length > 0) {
      let startsAfter = 0; // NULs followed by more bytes: each starts a message in this read
      for (let nul = data.indexOf(0); nul >= 0 && nul < data.length - 1; nul = data.indexOf(0, nul + 1)) startsAfter++;
      const owner = this.messages + startsAfter;
      this.fdsOf.set(owner, [...(this.fdsOf.get(owner) ?? []), ...fds]);
    }
    let start = 0;
    for (let nul = data.indexOf(0); nul >= 0; nul = data.indexOf(0, start)) {
      this.chunks.push(data.subarray(start, nul));
      const text = Buffer.concat(this.chunks).toString();
      this.chunks = [];
      start = nul + 1;
      this.onMessage(text, this.messages++);
    }
    if (start < data.length) this.chunks.push(Buffer.from(data.subarray(start)));
  }

  private onMessage(text: string, number: number): void {
    const message = JSON.parse(text) as { parameters?: Record<string, unknown>; continues?: boolean; error?: string };
    const fds = this.fdsOf.get(number) ?? [];
    this.fdsOf.delete(number);
    const reply: VarlinkReply = { parameters: message.parameters ?? {}, continues: message.continues === true, error: message.error, fds };
    const waiter = this.waiters[0];
    if (waiter === undefined) {
      this.strayFds += reply.fds.length;
      for (const fd of reply.fds) native.close(fd);
      return;
    }
    waiter.replies.push(reply);
    if (!reply.continues) {
      this.waiters.shift();
      waiter.resolve(waiter.replies);
    }
  }

  private onClose(reason: CloseReason): void {
    this.closeReason = reason;
    for (const fds of this.fdsOf.values()) for (const fd of fds) native.close(fd);
    this.fdsOf.clear();
    for (const waiter of this.waiters.splice(0)) {
      for (const reply of waiter.replies) for (const fd of reply.fds) native.close(fd);
      waiter.reject(new Error(`connection closed (${reason.kind})`));
    }
    for (const wake of this.closeWaiters.splice(0)) wake(reason);
  }
}
