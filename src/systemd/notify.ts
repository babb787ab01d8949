/**
 * sd_notify(3) for the daemon: READY=1, STATUS=, STOPPING=1 and WATCHDOG=1 datagrams to
 * the socket systemd names in NOTIFY_SOCKET, sent through the npm package unix-dgram.
 *
 * unix-dgram cannot address abstract sockets, so a NOTIFY_SOCKET starting with '@' is
 * reported once in the log and otherwise ignored (systemd itself passes a path,
 * /run/systemd/notify). Notification is best effort: a failing send is logged once and
 * never throws. No timer here keeps the process alive.
 */
import { createRequire } from 'node:module';
import { getSystemErrorName } from 'node:util';
import type { Logger } from '../log.js';

/** The part of a logger the notifier uses. */
export type NotifyLog = Pick<Logger, 'warn'>;

/** Where and how to notify; everything defaults to the real process. */
export interface NotifierOptions {
  log: NotifyLog;
  env?: NodeJS.ProcessEnv;
  pid?: number;
}

interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb: (err?: Error) => void): void;
  close(): void;
  on(event: 'error', listener: (err: Error) => void): void;
}
interface UnixDgram {
  createSocket(type: 'unix_dgram'): DgramSocket;
}

/**
 * unix-dgram, loaded on first send: it is a native addon of its own, and a daemon not run
 * by systemd (or a --help) should not fail because it did not build. null when it failed.
 * Not at construction: loading it (Node's dgram, the bindings lookup) took 6-8 ms here,
 * which a daemon's first request would wait for if it came before serving.
 */
let unixDgram: UnixDgram | null | undefined;
function loadUnixDgram(log: NotifyLog): UnixDgram | null {
  if (unixDgram === undefined) {
    try {
      unixDgram = createRequire(import.meta.filename)('unix-dgram') as UnixDgram;
    } catch (err) {
      log.warn({ err }, 'cannot load unix-dgram (was its native part built at install?): not notifying systemd');
      unixDgram = null;
    }
  }
  return unixDgram;
}

/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const SUN_PATH_MAX = 107;

/**
 * Talks to the service manager. Every method is a no-op when NOTIFY_SOCKET is unset
 * (the daemon was not started by systemd with Type=notify) or unusable.
 */
export class Notifier {
  /** The notify socket path, or null when notifications go nowhere. */
  readonly socketPath: string | null;
  private readonly log: NotifyLog;
  private readonly watchdogUsec: number | null;
  private watchdogTimer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private lastStatus: string | null = null;
  private sendFailed = false;
  /** stopping() was called: no READY=1, watchdog or status after it. */
  private stopped = false;

  constructor(options: NotifierOptions) {
    const env = options.env ?? process.env;
    const pid = options.pid ?? process.pid;
    this.log = options.log;
    const path = usableSocketPath(env.NOTIFY_SOCKET, this.log);
    this.socketPath = path;
    this.watchdogUsec = watchdogUsec(env, pid, this.log);
  }

  /** READY=1 (with a first STATUS=): send only once the socket is serving; never after stopping(). */
  ready(status?: string): void {
    if (this.stopped) return;
    if (status !== undefined) this.lastStatus = status;
    this.send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
  }

  /** STATUS=text, shown by `systemctl status`; one line. */
  status(text: string): void {
    this.lastStatus = text;
    this.send(`STATUS=${oneLine(text)}`);
  }

  /**
   * Sends STATUS= from summary() every intervalMs, but only when the text changed, so a
   * busy daemon does not send one datagram per request. Replaces an earlier tracker.
   */
  trackStatus(summary: () => string, intervalMs = 2000): void {
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.socketPath === null || this.stopped) return;
    this.statusTimer = setInterval(() => {
      const text = summary();
      if (text !== this.lastStatus) this.status(text);
    }, intervalMs);
    this.statusTimer.unref();
  }

  /** STOPPING=1: the daemon began shutting down. Stops the watchdog and status timers. */
  stopping(status?: string): void {
    this.stopped = true;
    this.close();
    this.send(status === undefined ? 'STOPPING=1' : `STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  /** Half of WATCHDOG_USEC in milliseconds, or null when systemd expects no pings. */
  get watchdogIntervalMs(): number | null {
    return this.watchdogUsec === null ? null : Math.max(1, Math.floor(this.watchdogUsec / 2000));
  }

  /**
   * Sends WATCHDOG=1 every WATCHDOG_USEC/2 from the event loop, so a blocked loop misses
   * its pings and systemd restarts the daemon. Returns whether a watchdog is running.
   */
  startWatchdog(): boolean {
    const interval = this.watchdogIntervalMs;
    if (interval === null || this.socketPath === null || this.stopped) return false;
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    this.watchdogTimer = setInterval(() => this.send('WATCHDOG=1'), interval);
    this.watchdogTimer.unref();
    return true;
  }

  /** Stops the watchdog and status timers; idempotent. */
  close(): void {
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.watchdogTimer = null;
    this.statusTimer = null;
  }

  /**
   * One datagram through a socket made for it: a unix-dgram socket sits in uv_poll on the
   * default loop with no way to unref it, so holding one would keep the daemon alive.
   * One socket(2) + sendto(2) + close(2) per notification is cheap at this rate.
   */
  private send(message: string): void {
    const path = this.socketPath;
    if (path === null) return;
    const dgram = loadUnixDgram(this.log);
    if (dgram === null) return;
    const buf = Buffer.from(message);
    let error: Error | undefined;
    let sock: DgramSocket | undefined;
    try {
      sock = dgram.createSocket('unix_dgram');
      sock.on('error', (err) => { error ??= err; });
      sock.send(buf, 0, buf.length, path, (err) => { error ??= err; });
    } catch (err) {
      error ??= err as Error;
    } finally {
      try {
        sock?.close();
      } catch {
        // close(2) failing leaves nothing to clean up; the send result is what matters.
      }
    }
    if (error && !this.sendFailed) {
      this.sendFailed = true;
      this.log.warn({ err: readableError(error), notifySocket: path, message: message.split('\n')[0] },
        'sd_notify failed; further failures are not logged');
    }
  }
}

/** unix-dgram reports errno as a negative number in `code`; name it the way Node does. */
function readableError(err: Error): { code: string; syscall?: string; message: string } {
  const { code, syscall } = err as Error & { code?: unknown; syscall?: string };
  if (typeof code === 'number' && code < 0) return { code: getSystemErrorName(code), syscall, message: err.message };
  return { code: String(code ?? 'UNKNOWN'), syscall, message: err.message };
}

function oneLine(text: string): string {
  return text.replace(/\n/g, ' ');
}

function usableSocketPath(value: string | undefined, log: NotifyLog): string | null {
  if (value === undefined || value === '') return null;
  if (value.startsWith('@')) {
    log.warn({ notifySocket: value },
      'NOTIFY_SOCKET is an abstract socket, which unix-dgram cannot reach: not notifying systemd');
    return null;
  }
  if (!value.startsWith('/') || Buffer.byteLength(value) > SUN_PATH_MAX) {
    log.warn({ notifySocket: value },
      `NOTIFY_SOCKET is not an absolute path of at most ${SUN_PATH_MAX} bytes: not notifying systemd`);
    return null;
  }
  return value;
}

function watchdogUsec(env: NodeJS.ProcessEnv, pid: number, log: NotifyLog): number | null {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined) return null;
  // WATCHDOG_PID names the process systemd watches; pings from any other are ignored.
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return null;
  if (!/^[1-9][0-9]*$/.test(usec)) {
    log.warn({ watchdogUsec: usec }, 'WATCHDOG_USEC is not a positive number: no watchdog pings');
    return null;
  }
  return Number(usec);
}
