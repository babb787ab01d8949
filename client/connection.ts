/**
 * One client connection to diskseqd: request ids, encoding, and the routing of each
 * response (with the fds it carries) to the request it answers. Requests are pipelined;
 * responses come back in any order and are matched by id.
 *
 * fd ownership: every fd that arrives is handed to exactly one owner — the handler of the
 * request it answers, or, when no request is waiting for that id (aborted, finished, or a
 * protocol violation), this module, which closes it at once.
 */
import { PacketSocket, type CloseReason, type IncomingPacket } from '../native/packet-socket.js';
import { DEFAULT_SOCKET_PATH, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, u64ToLong, wire, type WireResponse } from '../proto/contract.js';
import { native, type NativeError } from '../native/index.js';
import type { diskseqd } from '../proto/gen/diskseqd.js';
import { ConnectionError, invalidArgument, protocolError } from './errors.js';

/** The request body of a Request, without its id. */
export type RequestBody = Omit<diskseqd.v1.IRequest, 'id'>;

/** Receives the responses to one request. */
export interface ResponseHandler {
  /**
   * One response with this request's id, and the fds that came with it (now owned by the
   * handler, which must close any it does not hand on). Returns true when the request is
   * complete: later packets with the same id are then treated as unknown.
   */
  onResponse(response: WireResponse, fds: number[]): boolean;
  /** The connection failed or was closed before the request completed. */
  onFailure(error: Error): void;
}

/** Client-side output bounds: generous, since only this process's own requests queue up. */
const CLIENT_LIMITS = {
  receiveSize: MAX_RESPONSE_BYTES, maxQueuedPackets: 1 << 20, maxQueuedBytes: 256 << 20, maxQueuedFds: 0, stallTimeoutMs: 0,
};

/**
 * The socket path a client uses: the explicit one, else $DISKSEQD_SOCKET, else
 * /run/diskseqd.sock.
 */
export function resolveSocketPath(explicit?: string): string {
  if (explicit !== undefined && explicit !== '') return explicit;
  const fromEnv = process.env['DISKSEQD_SOCKET'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_SOCKET_PATH;
}

/** Closes fds this module owns. Synchronous: these are stray fds, and a deterministic close
 * lets callers (and tests) rely on them being gone when the packet has been handled. */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      native.close(fd);
    } catch {
      // close(2) releases the descriptor even when it reports an error.
    }
  }
}

/** A connected, pipelining request channel. */
export class Connection {
  private readonly socket: PacketSocket;
  private readonly pending = new Map<string, ResponseHandler>();
  private nextId = 1n;
  /** Set before a deliberate close, so waiting requests learn the real reason. */
  private failure: Error | null = null;

  private constructor(readonly socketPath: string, fd: number) {
    this.socket = new PacketSocket(fd, CLIENT_LIMITS, {
      onPacket: (packet) => this.onPacket(packet),
      onClose: (reason) => this.onClose(reason),
    });
  }

  /**
   * Connects to the daemon (a blocking connect(2), immediate on a local socket). Throws a
   * ConnectionError carrying the errno name (ENOENT, ECONNREFUSED, EACCES ...).
   */
  static open(socketPath: string): Connection {
    let fd: number;
    try {
      fd = native.connectSeqpacket(socketPath, true);
    } catch (error) {
      const cause = error as NativeError;
      throw new ConnectionError(`cannot connect to diskseqd at ${socketPath}: ${cause.message}`, {
        code: cause.code ?? 'UNKNOWN', errno: cause.errno, socketPath, cause,
      });
    }
    return new Connection(socketPath, fd);
  }

  /** True once the connection is closed (by close(), the daemon, or a protocol error). */
  get isClosed(): boolean {
    return this.socket.isClosed;
  }

  /** Requests sent and not yet complete. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Sends one request and registers its handler; returns the request id. Throws
   * DiskseqError 'INVALID_ARGUMENT' when the encoded request exceeds the 4096-byte limit
   * (the daemon would drop the connection, and every pipelined request with it), and the
   * connection's failure when it is closed.
   */
  send(body: RequestBody, handler: ResponseHandler): bigint {
    if (this.socket.isClosed) throw this.closedError();
    const id = this.nextId++;
    const bytes = wire.Request.encode({ ...body, id: u64ToLong(id) }).finish();
    if (bytes.length > MAX_REQUEST_BYTES) {
      throw invalidArgument(`request of ${bytes.length} bytes exceeds the protocol limit of ${MAX_REQUEST_BYTES}`);
    }
    this.pending.set(id.toString(), handler);
    if (!this.socket.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length))) {
      // The socket closed while sending: onClose has already failed the handler.
      this.pending.delete(id.toString());
    }
    return id;
  }

  /** Stops waiting for request `id`: any later response to it is dropped, its fds closed. */
  forget(id: bigint): void {
    this.pending.delete(id.toString());
  }

  /** Stops reading responses (back-pressure for a slow consumer). */
  pauseReading(): void {
    this.socket.pauseReading();
  }

  /** Resumes reading responses. */
  resumeReading(): void {
    this.socket.resumeReading();
  }

  /**
   * Closes the connection; idempotent. Every request still waiting fails with a
   * ConnectionError 'CONNECTION_CLOSED' (or `failure` when given).
   */
  close(failure?: Error): void {
    if (this.socket.isClosed) return;
    if (failure !== undefined) this.failure = failure;
    this.socket.close({ kind: 'local' });
  }

  private closedError(): Error {
    return this.failure ?? new ConnectionError('connection closed', { code: 'CONNECTION_CLOSED', socketPath: this.socketPath });
  }

  private onPacket(packet: IncomingPacket): void {
    if (packet.truncated || packet.controlTruncated) {
      closeFds(packet.fds);
      const what = packet.truncated ? `a response longer than ${MAX_RESPONSE_BYTES} bytes` : 'more fds than one response may carry';
      this.close(protocolError(`received ${what}`));
      return;
    }
    let response: WireResponse;
    try {
      response = wire.Response.decode(packet.data);
    } catch (error) {
      closeFds(packet.fds);
      this.close(protocolError(`undecodable response: ${(error as Error).message}`));
      return;
    }
    const key = response.id.toString();
    const handler = this.pending.get(key);
    if (handler === undefined) {
      // A late answer to an aborted request, or a stray: nobody may keep its fds.
      closeFds(packet.fds);
      return;
    }
    let done = true;
    try {
      done = handler.onResponse(response, packet.fds);
    } finally {
      if (done) this.pending.delete(key);
    }
  }

  private onClose(reason: CloseReason): void {
    if (this.failure === null) this.failure = closeReasonError(reason, this.socketPath);
    const handlers = [...this.pending.values()];
    this.pending.clear();
    for (const handler of handlers) handler.onFailure(this.failure);
  }
}

function closeReasonError(reason: CloseReason, socketPath: string): Error {
  switch (reason.kind) {
    case 'local':
      return new ConnectionError('connection closed', { code: 'CONNECTION_CLOSED', socketPath });
    case 'peer-closed':
      return new ConnectionError('diskseqd closed the connection', { code: 'CONNECTION_CLOSED', socketPath });
    case 'output-overflow':
    case 'output-stalled':
      return new ConnectionError('too many requests queued on the connection', { code: 'CONNECTION_CLOSED', socketPath });
    case 'error': {
      const cause = reason.error as Partial<NativeError>;
      return new ConnectionError(`connection to diskseqd failed: ${cause.message}`, {
        code: cause.code ?? 'CONNECTION_CLOSED', errno: cause.errno, socketPath, cause,
      });
    }
  }
}
