/**
 * The kernel's uevent netlink socket, read without udev. Events are hints: the registry
 * re-reads sysfs for the device named, because a detach announces the *old* diskseq and
 * the new one is never announced. Only the kernel's own messages (sender port 0) of the
 * block subsystem are passed on.
 */
import { basename } from 'node:path';
import { native, POLL_READABLE, type Poller } from '../native/index.js';
import { hasErrnoCode } from './errors.js';
import type { Logger } from './log.js';

/** One block-device uevent, reduced to what the registry uses. */
export interface BlockUevent {
  action: string;
  /** The sysfs name (last component of DEVPATH), e.g. loop3 or loop3p1. */
  name: string;
  isPartition: boolean;
  /** DISKSEQ= (for a partition: its disk's, when the event was sent); null when absent. */
  diskseq: bigint | null;
}

/** What the listener reports. */
export interface UeventHandlers {
  onEvent(event: BlockUevent): void;
  /** The kernel dropped events (ENOBUFS): nothing but a full rescan can catch up. */
  onOverrun(): void;
}

/** Largest uevent the kernel sends is well under this (UEVENT_BUFFER_SIZE is 2048). */
const RECEIVE_SIZE = 8192;

export class UeventListener {
  private readonly fd: number;
  private readonly poller: Poller;
  private readonly buffer = Buffer.allocUnsafe(RECEIVE_SIZE);
  private closed = false;

  /** Subscribes now; subscribe before the first scan so nothing falls between them. */
  constructor(private readonly handlers: UeventHandlers, private readonly log: Logger, receiveBufferBytes = 4 * 1024 * 1024) {
    this.fd = native.openUeventSocket(receiveBufferBytes);
    this.poller = new native.Poller(this.fd, (status) => {
      if (status >= 0) {
        this.drain();
        return;
      }
      // An overrun sets the socket's error, so poll reports POLLERR, which libuv passes on
      // as UV_EBADF after it has *stopped* polling. Reading takes the error (ENOBUFS: an
      // overrun, answered by a rescan); then poll again, or no uevent would ever be read.
      if (this.drain() && !this.closed) this.poller.start(POLL_READABLE);
      else this.log.error({ status }, 'poll on the uevent socket failed; uevents are read only before answers from now on');
    });
    this.poller.start(POLL_READABLE);
  }

  /**
   * Reads and handles every event pending now (called before answering a miss). Returns
   * false when reading failed with anything but an overrun (logged), true otherwise.
   */
  drain(): boolean {
    while (!this.closed) {
      let received;
      try {
        received = native.recvUevent(this.fd, this.buffer);
      } catch (error) {
        if (hasErrnoCode(error, 'ENOBUFS')) {
          this.log.warn('uevent socket overrun; rescanning sysfs');
          this.handlers.onOverrun();
          continue;
        }
        this.log.error({ err: error }, 'reading the uevent socket failed');
        return false;
      }
      if (received === null) return true;
      if (received.senderPid !== 0 || received.truncated) continue; // not from the kernel
      const event = parseBlockUevent(this.buffer.subarray(0, received.bytes));
      if (event !== null) this.handlers.onEvent(event);
    }
    return true;
  }

  /** Stops listening; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native.close(this.fd);
  }
}

/**
 * Parses `action@devpath\0KEY=VALUE\0...`; null for anything but a block device event.
 */
export function parseBlockUevent(data: Uint8Array): BlockUevent | null {
  const fields = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8').split('\0');
  const header = fields[0] ?? '';
  const at = header.indexOf('@');
  if (at <= 0) return null; // libudev's "libudev\0..." messages and anything else
  const values = new Map<string, string>();
  for (const field of fields.slice(1)) {
    const eq = field.indexOf('=');
    if (eq > 0) values.set(field.slice(0, eq), field.slice(eq + 1));
  }
  if (values.get('SUBSYSTEM') !== 'block') return null;
  const devpath = values.get('DEVPATH') ?? header.slice(at + 1);
  const name = basename(devpath);
  if (name === '' || name === '.' || name === '..') return null;
  const devtype = values.get('DEVTYPE');
  if (devtype !== 'disk' && devtype !== 'partition') return null;
  const diskseqText = values.get('DISKSEQ');
  const diskseq = diskseqText !== undefined && /^[0-9]{1,20}$/.test(diskseqText) ? BigInt(diskseqText) : null;
  return { action: values.get('ACTION') ?? header.slice(0, at), name, isPartition: devtype === 'partition', diskseq };
}
