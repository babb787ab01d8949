/**
 * Where log lines go: standard output, written so that a consumer that stops reading (a
 * wedged journald, a parent blocked in spawnSync) never stops the daemon
 * (docs/design.md, "Logging").
 *
 * A line is written at once when it can be; when stdout is full, lines wait in a bounded
 * backlog that drains when the fd becomes writable again. Past the bound lines are
 * dropped and counted, and one "N log lines dropped" line follows when the writer
 * recovers. Audit lines and warnings may use the whole backlog; other lines only half of
 * it, so that a flood of chatter cannot push out the lines that matter. flush() writes
 * what is left, bounded in time, before a clean exit.
 *
 * How stdout is made non-blocking without changing it for anyone else: a pipe, FIFO or
 * terminal is opened again through /proc/self/fd/1, which gives this process a file
 * description of its own to set O_NONBLOCK on; a socket (journald's stream) cannot be
 * reopened, so its own description is set non-blocking (uv_poll does that; nobody but
 * this process and its children writes to the journal stream systemd made for it). A
 * regular file or /dev/null never blocks for long and is written directly.
 */
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import { native, POLL_WRITABLE, type Poller } from '../native/index.js';

/** The backlog's default bound in bytes (about 10,000 audit lines). */
export const DEFAULT_BACKLOG_BYTES = 4 * 1024 * 1024;

/** How long flush() keeps trying to write what is left. */
const FLUSH_TIMEOUT_MS = 2000;

/** A destination for whole lines. */
export interface LineSink {
  /**
   * Writes one line (ending in '\n') now, or queues it. `important` lines (audit, warn and
   * worse) may fill the whole backlog, others half of it. Never blocks, never throws.
   */
  write(line: string, important: boolean): void;
  /** Writes what is queued, waiting up to timeoutMs for the reader; returns lines left unwritten. */
  flush(timeoutMs?: number): number;
  /** Lines dropped since the start because the backlog was full or the reader gone. */
  readonly dropped: number;
  /** Bytes waiting in the backlog now. */
  readonly backlogBytes: number;
}

/** How a FdSink writes: the fd, and whether it may block (a file) or must not (a pipe, socket, tty). */
interface Target {
  fd: number;
  /** A poller on fd when writes can return EAGAIN; undefined for files, which never do. */
  poller: Poller | undefined;
  /** Whether this sink opened fd itself (and closes it on close()). */
  owned: boolean;
}

/**
 * Lines to an fd (normally 1) through a bounded backlog. `onDropped` gets the count of
 * lines dropped since the last report once the writer recovers; its line is written
 * before any newer one.
 */
export class FdSink implements LineSink {
  private readonly target: Target | undefined;
  private readonly queue: string[] = [];
  private queuedBytes = 0;
  private polling = false;
  private totalDropped = 0;
  /** Dropped since the last "dropped" report. */
  private unreported = 0;
  /** The reader is gone (EPIPE, EBADF): nothing will ever be written again. */
  private broken = false;

  constructor(
    fd = 1,
    private readonly backlogLimit = DEFAULT_BACKLOG_BYTES,
    private readonly droppedLine: (count: number) => string = (count) => `${count} log lines dropped\n`,
  ) {
    this.target = openTarget(fd, () => this.onWritable());
    if (this.target === undefined) this.broken = true;
  }

  get dropped(): number {
    return this.totalDropped;
  }

  get backlogBytes(): number {
    return this.queuedBytes;
  }

  write(line: string, important: boolean): void {
    if (this.broken) {
      this.drop();
      return;
    }
    if (this.queue.length === 0 && this.unreported === 0) {
      const rest = this.tryWrite(line);
      if (rest === '') return;
      this.enqueue(rest); // the rest of a line begun must follow, whatever the bound
      this.waitWritable();
      return;
    }
    const room = important ? this.backlogLimit : this.backlogLimit >> 1;
    if (this.queuedBytes + Buffer.byteLength(line) > room) {
      this.drop();
      return;
    }
    this.reportDropped(); // the report goes where the gap is: before the next line kept
    this.enqueue(line);
    this.waitWritable();
  }

  flush(timeoutMs = FLUSH_TIMEOUT_MS): number {
    const deadline = Date.now() + timeoutMs;
    while (!this.broken && (this.queue.length > 0 || this.unreported > 0)) {
      if (this.drain()) break;
      if (Date.now() >= deadline) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
    return this.queue.length;
  }

  /** Stops polling and closes an fd this sink opened; idempotent. Lines still queued are lost. */
  close(): void {
    this.target?.poller?.close();
    if (this.target?.owned) closeSync(this.target.fd);
    this.broken = true;
  }

  private drop(): void {
    this.totalDropped++;
    this.unreported++;
  }

  private enqueue(line: string): void {
    this.queue.push(line);
    this.queuedBytes += Buffer.byteLength(line);
  }

  /** Queues the "N log lines dropped" line for the drops not yet reported. */
  private reportDropped(): void {
    if (this.unreported === 0) return;
    this.enqueue(this.droppedLine(this.unreported));
    this.unreported = 0;
  }

  /** Writes from the queue until it is empty (true) or the fd is full (false). */
  private drain(): boolean {
    this.reportDropped();
    while (this.queue.length > 0) {
      // Many small lines in one write(2), up to 64 KiB.
      let batch = this.queue[0]!;
      let taken = 1;
      while (taken < this.queue.length && batch.length < 65536) batch += this.queue[taken++]!;
      const rest = this.tryWrite(batch);
      if (this.broken) return true;
      this.queue.splice(0, taken);
      this.queuedBytes -= Buffer.byteLength(batch) - Buffer.byteLength(rest);
      if (rest !== '') {
        this.queue.unshift(rest);
        return false;
      }
      if (this.queue.length === 0) this.reportDropped();
    }
    this.queuedBytes = 0;
    return true;
  }

  /** Writes as much of `text` as the fd takes now; returns what is left ('' when all of it). */
  private tryWrite(text: string): string {
    const target = this.target!;
    let buffer: Buffer | undefined;
    let offset = 0;
    for (;;) {
      try {
        if (buffer === undefined) {
          const n = writeSync(target.fd, text);
          if (n === Buffer.byteLength(text)) return '';
          buffer = Buffer.from(text);
          offset = n;
        } else {
          offset += writeSync(target.fd, buffer, offset);
          if (offset === buffer.length) return '';
        }
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') break;
        if (code === 'EINTR') continue;
        this.broken = true; // EPIPE, EBADF, EIO...: the reader is gone for good
        this.queue.length = 0;
        this.queuedBytes = 0;
        return '';
      }
    }
    return buffer === undefined ? text : buffer.subarray(offset).toString();
  }

  private waitWritable(): void {
    const poller = this.target?.poller;
    if (this.polling || poller === undefined) return;
    this.polling = true;
    poller.start(POLL_WRITABLE);
  }

  /** The fd is writable again (or failed): write what waits, stop polling once it is out. */
  private onWritable(): void {
    if (!this.drain() && !this.broken) return;
    this.polling = false;
    this.target?.poller?.stop();
  }
}

/**
 * The fd to write and how: see the module comment. undefined when fd is not open.
 * Called once per sink at construction.
 */
function openTarget(fd: number, onWritable: () => void): Target | undefined {
  let stat;
  try {
    stat = fstatSync(fd);
  } catch {
    return undefined;
  }
  // /dev/null, /dev/full and the other memory devices never block.
  const memoryDevice = stat.isCharacterDevice() && Math.floor(stat.rdev / 256) % 4096 === 1;
  if (stat.isFile() || memoryDevice) return { fd, poller: undefined, owned: false };
  let ownFd = fd;
  let owned = false;
  if (stat.isFIFO() || stat.isCharacterDevice()) {
    try {
      ownFd = openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY); // libuv adds O_CLOEXEC
      owned = true;
    } catch {
      // No /proc: write the shared description, blocking, rather than change it for others.
      return { fd, poller: undefined, owned: false };
    }
  }
  // A socket (or the reopened fd): uv_poll_init makes its description non-blocking.
  return { fd: ownFd, poller: new native.Poller(ownFd, () => onWritable()), owned };
}

/**
 * Whether fd is a terminal, told by its device's major number (tty 4, console and ptmx 5,
 * pseudo-terminal slaves 136-143) rather than by node:tty, which costs a module load of
 * its own at startup.
 */
export function isTerminal(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    if (!stat.isCharacterDevice()) return false;
    const major = Math.floor(stat.rdev / 256) % 4096;
    return major === 4 || major === 5 || (major >= 136 && major <= 143);
  } catch {
    return false;
  }
}
