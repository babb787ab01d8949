/**
 * The one way tests and benchmarks run the real daemon: bin/diskseqd.cjs as a child process
 * on a private socket, always with the node flags of its shebang line, watched from
 * outside (its fds and RSS in /proc, its JSON log lines). Always stopped in teardown
 * (SIGTERM, then SIGKILL after a timeout) and, as a safety net, at process exit.
 *
 * How the log is captured (`capture`):
 * - 'lines' (default): every JSON line parsed and kept, for tests that search the audit log;
 * - 'counts': lines counted by `msg`, only the last few kept, for fuzz runs that make the
 *   daemon write 100,000 lines and more;
 * - 'file': stdout and stderr go to files in the daemon's directory, read when asked, for
 *   tests that block this event loop with spawnSync: a daemon writing into a full pipe
 *   nobody reads would stall.
 *
 * TEST_DAEMON_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") adds node options to
 * every daemon started, for diagnosis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync, closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { native } from '../native/index.js';
import { onExit, sleep, type ExitHook, type TeardownHost } from './cleanup.js';
import { fdCount, fdTargets, rssBytes } from './proc.js';
import { DAEMON_SCRIPT, daemonArgv, SHEBANG_ENV, SHEBANG_UNSET } from './repo.js';

/** One parsed log line (a line that is not JSON becomes { msg: '(not JSON)', text }). */
export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

/** The audit line the daemon writes once per request. */
export interface AuditLine extends LogLine {
  msg: 'audit';
  op: 'open' | 'list' | 'hello' | 'watch' | string;
  peer: { uid: number; gid: number; pid: number };
  request?: Record<string, unknown>;
  device?: { name: string; major: number; minor: number };
  decision: 'allow' | 'deny' | 'error' | string;
  rule?: string;
  code: string;
  us: number;
}

/** How the daemon's log is kept (see the module comment). */
export type LogCapture = 'lines' | 'counts' | 'file';

/** How to start the daemon. */
export interface DaemonOptions {
  /** More node options, after the shebang's (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Socket path (default: d.sock in the daemon's fresh temp dir). */
  socketPath?: string;
  /** Log level (default info: audit lines are info). */
  logLevel?: string;
  sysfsRoot?: string;
  /**
   * --runtime-dir (default: `run` in the daemon's fresh temp dir, removed by stop()). Give
   * the same directory to two daemons to test what survives a restart; never /run/diskseqd.
   */
  runtimeDir?: string;
  /**
   * --cache-dir (default: `cache` in the daemon's fresh temp dir). Give the same directory
   * to two daemons for the second to start from the code cache the first wrote; never
   * /var/cache/diskseqd.
   */
  cacheDir?: string;
  /** A policy file, or a policy to write (0644) to policy.json in the daemon's directory. */
  policy?: string | object;
  extraArgs?: string[];
  /**
   * Serve Varlink too, on a private path (varlinkPath); without it the daemon runs with
   * --no-varlink (never the machine-wide default path).
   */
  varlink?: boolean;
  /** Make the socket reachable by other uids (dir 0755, socket 0666), for peer tests. */
  worldAccessible?: boolean;
  /**
   * How long to wait for the daemon to serve (default 30 s: on this shared 2-core VM a
   * scan of 10,000 synthetic disks has taken over 10 s when other test runs load it).
   */
  readyTimeoutMs?: number;
  capture?: LogCapture;
  /**
   * A command the daemon runs under, such as `prlimit --nofile=512:512` or `setpriv
   * --bounding-set=...`: its argv, which the daemon's own argv follows. It must exec the
   * daemon in place (prlimit and setpriv do), so that the pid watched is the daemon's.
   */
  wrapper?: string[];
  /**
   * Exec bin/diskseqd.cjs itself, through its shebang line, exactly as the installed
   * command starts (nodeArgs then go in NODE_OPTIONS): for measurements of the daemon as
   * shipped. Otherwise this node runs it with the shebang's flags and environment.
   */
  throughShebang?: boolean;
  /**
   * Variables added to the daemon's environment. It inherits this process's, without
   * systemd's LISTEN_*, NOTIFY_SOCKET and WATCHDOG_* (a test daemon is never activated).
   */
  env?: NodeJS.ProcessEnv;
}

/** How the daemon ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Lines kept for error messages in every mode. */
const TAIL = 20;
/** stderr kept in 'counts' mode. */
const STDERR_BYTES = 4000;
const SYSTEMD_VARIABLES = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET', 'WATCHDOG_PID', 'WATCHDOG_USEC'];

/** A running daemon (see the module comment). */
export class DaemonProcess {
  readonly socketPath: string;
  /** The Varlink socket when started with `varlink`, else undefined. */
  readonly varlinkPath: string | undefined;
  /** The daemon's private directory (removed by stop()). */
  readonly dir: string;
  /** Its --runtime-dir. */
  readonly runtimeDir: string;
  /** Its --cache-dir. */
  readonly cacheDir: string;
  readonly capture: LogCapture;
  /** stdout lines that were not JSON. */
  readonly nonJsonStdout: string[] = [];
  private readonly child: ChildProcess;
  private readonly kept: LogLine[] = [];
  private readonly tail: LogLine[] = [];
  private readonly counts = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  private readonly exited: Promise<ExitStatus>;
  private readonly killAtExit: ExitHook;
  private stderrText = '';
  private exitInfo: ExitStatus | undefined;
  /** 'file' mode: how far the log file has been read, and an unfinished last line. */
  private fileOffset = 0;
  private partialLine = '';
  /** stop() removed the daemon's directory (and in 'file' mode its log files). */
  private removed = false;

  private constructor(options: DaemonOptions) {
    this.capture = options.capture ?? 'lines';
    this.dir = mkdtempSync(join(tmpdir(), 'diskseqd-daemon-'));
    if (options.worldAccessible) chmodSync(this.dir, 0o755);
    this.socketPath = options.socketPath ?? join(this.dir, 'd.sock');
    this.varlinkPath = options.varlink ? join(this.dir, 'varlink', 'diskseq') : undefined;
    this.runtimeDir = options.runtimeDir ?? join(this.dir, 'run');
    this.cacheDir = options.cacheDir ?? join(this.dir, 'cache');
    const args = ['--socket', this.socketPath, '--runtime-dir', this.runtimeDir, '--cache-dir', this.cacheDir, '--log-level', options.logLevel ?? 'info'];
    if (this.varlinkPath !== undefined) args.push('--varlink-socket', this.varlinkPath);
    if (options.sysfsRoot) args.push('--sysfs-root', options.sysfsRoot);
    if (options.policy !== undefined) args.push('--policy', this.policyFile(options.policy));
    args.push(...(options.extraArgs ?? []));
    const diagnosis = (process.env.TEST_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const key of SYSTEMD_VARIABLES) delete env[key];
    let node: string;
    let argv: string[];
    if (options.throughShebang) {
      // daemonArgv's rule too: never the machine's default Varlink path.
      [node, argv] = [DAEMON_SCRIPT, this.varlinkPath === undefined ? [...args, '--no-varlink'] : args];
      const extra = [...(options.nodeArgs ?? []), ...diagnosis].join(' ');
      if (extra !== '') env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} ${extra}`.trim();
    } else {
      [node, ...argv] = daemonArgv(...args) as [string, ...string[]];
      argv.unshift(...(options.nodeArgs ?? []), ...diagnosis);
      Object.assign(env, SHEBANG_ENV);
      for (const key of SHEBANG_UNSET) delete env[key];
    }
    if (options.wrapper !== undefined && options.wrapper.length > 0) {
      argv = [...options.wrapper.slice(1), node, ...argv];
      node = options.wrapper[0]!;
    }
    Object.assign(env, options.env);

    if (this.capture === 'file') {
      const out = openSync(this.logFile, 'a');
      const err = openSync(this.stderrFile, 'a');
      try {
        this.child = spawn(node, argv, { stdio: ['ignore', out, err], env });
      } finally {
        closeSync(out);
        closeSync(err);
      }
    } else {
      this.child = spawn(node, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
      createInterface({ input: this.child.stdout! }).on('line', (text) => this.onLine(text));
      this.child.stderr!.on('data', (chunk: Buffer) => {
        this.stderrText += chunk.toString();
        if (this.capture === 'counts') this.stderrText = this.stderrText.slice(-STDERR_BYTES);
      });
    }
    this.killAtExit = onExit(() => this.child.kill('SIGKILL'));
    // 'close', not 'exit': every line the daemon wrote has been read by then.
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.killAtExit.cancel();
        this.exitInfo = { code, signal };
        this.notify();
        resolve(this.exitInfo);
      });
    });
  }

  /**
   * Starts a daemon and waits until it serves (its "serving" line, or at log levels
   * quieter than info and in 'file' mode, a connectable socket). Stop is registered on
   * `t` (when given) and at process exit.
   */
  static async start(options: DaemonOptions = {}, t?: TeardownHost): Promise<DaemonProcess> {
    const daemon = new DaemonProcess(options);
    t?.teardown(async () => {
      await daemon.stop();
    });
    try {
      const timeoutMs = options.readyTimeoutMs ?? 30_000;
      if (daemon.capture !== 'file' && ['trace', 'debug', 'info'].includes(options.logLevel ?? 'info')) {
        await daemon.waitForLog((l) => l.msg === 'serving', timeoutMs, 'the "serving" line');
      } else {
        await daemon.waitConnectable(timeoutMs);
      }
      if (options.worldAccessible) chmodSync(daemon.socketPath, 0o666);
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  /** The daemon's pid. */
  get pid(): number {
    return this.child.pid!;
  }

  /** Whether the daemon process is still running. */
  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** Exit status once it has exited. */
  get exit(): ExitStatus | undefined {
    return this.exitInfo;
  }

  /** Every log line so far, parsed ('lines' and 'file' modes; 'counts' keeps only a tail). */
  get logs(): readonly LogLine[] {
    if (this.capture === 'counts') throw new Error('DaemonProcess: capture "counts" keeps no full log; use count() or capture "lines"');
    this.readLogFile();
    return this.kept;
  }

  /** stderr so far ('counts' mode: its last few thousand bytes). */
  get stderr(): string {
    if (this.capture === 'file' && !this.removed) this.stderrText = readFileSync(this.stderrFile, 'utf8');
    return this.stderrText;
  }

  /** The audit lines so far. */
  audits(): AuditLine[] {
    return this.logs.filter((l): l is AuditLine => l.msg === 'audit');
  }

  /** How many log lines with this `msg` the daemon has written so far (every mode). */
  count(msg: string): number {
    this.readLogFile();
    return this.counts.get(msg) ?? 0;
  }

  /** Number of fds the daemon has open (entries of /proc/<pid>/fd). */
  fdCount(): number {
    return fdCount(this.pid);
  }

  /** The daemon's open fds with their targets (for diagnosing a leak). */
  fdTargets(): string[] {
    return fdTargets(this.pid);
  }

  /** Resident set size in bytes (VmRSS of /proc/<pid>/status). */
  rssBytes(): number {
    return rssBytes(this.pid);
  }

  /** fd count and RSS now. */
  footprint(): Footprint {
    return { fds: this.fdCount(), rssBytes: this.rssBytes() };
  }

  /**
   * Resolves with the first log line (already seen — in 'counts' mode among the last few —
   * or future) matching `predicate`; rejects after `timeoutMs` or when the daemon exits
   * first, quoting its output.
   */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 5000, what = 'a matching log line'): Promise<LogLine> {
    return this.until(() => (this.capture === 'counts' ? this.tail : this.logs).find(predicate), timeoutMs, what);
  }

  /** Waits until count(msg) reaches `n`; resolves with the count then (or at the timeout or exit). */
  async waitForCount(msg: string, n: number, timeoutMs = 5000): Promise<number> {
    await this.until(() => (this.count(msg) >= n ? true : undefined), timeoutMs, `${n} "${msg}" lines`).catch(() => undefined);
    return this.count(msg);
  }

  /** Resolves once a SEQPACKET connect to the socket succeeds; rejects on timeout or exit. */
  async waitConnectable(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        native.close(native.connectSeqpacket(this.socketPath, false));
        return;
      } catch (error) {
        if (this.exitInfo) throw new Error(`daemon exited (${JSON.stringify(this.exitInfo)}) before serving; ${this.describe()}`);
        if (Date.now() > deadline) throw new Error(`socket ${this.socketPath} not connectable after ${timeoutMs} ms (${(error as Error).message}); ${this.describe()}`);
      }
      await sleep(20);
    }
  }

  /**
   * Polls the fd count until it is at or below `target` (a leak shows as a count that stays
   * above it) or `timeoutMs` passes; returns the last count. A settle, not a timing assertion:
   * the daemon closes some fds off its event loop.
   */
  async settleFds(target: number, timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let fds = this.fdCount();
    // At or below: a leak never lowers the count (the caller asserts which it expects).
    while (fds > target && Date.now() < deadline) {
      await sleep(25);
      fds = this.fdCount();
    }
    return fds;
  }

  /**
   * The fd count once it has stopped changing (the same over several polls), for a
   * baseline taken after some activity: closes may still be running off the event loop.
   */
  async stableFdCount(timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last = this.fdCount();
    for (let same = 0; same < 4 && Date.now() < deadline;) {
      await sleep(50);
      const now = this.fdCount();
      same = now === last ? same + 1 : 0;
      last = now;
    }
    return last;
  }

  /** Resolves with the exit status once the daemon exits (no signal sent). */
  waitForExit(): Promise<ExitStatus> {
    return this.exited;
  }

  /** SIGTERM, wait for exit (SIGKILL after `timeoutMs`), remove the temp dir; idempotent. */
  async stop(timeoutMs = 5000): Promise<ExitStatus> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    // Whatever a test may ask after the stop is read before the files go.
    if (!this.removed) {
      this.readLogFile();
      if (this.capture === 'file') this.stderrText = readFileSync(this.stderrFile, 'utf8');
    }
    this.removed = true;
    rmSync(this.dir, { recursive: true, force: true });
    return this.exitInfo!;
  }

  /** Exit status, the end of stderr and of non-JSON stdout, and the last log lines, for failure messages. */
  describe(): string {
    this.readLogFile();
    const tail = (s: string): string => s.split('\n').slice(-15).join('\n');
    return `exit ${JSON.stringify(this.exitInfo ?? 'running')}; stderr:\n${tail(this.stderr.trim()) || '(empty)'}\n` +
      `stdout (non-JSON):\n${tail(this.nonJsonStdout.join('\n')) || '(empty)'}\n` +
      `last log lines:\n${this.tail.slice(-5).map((l) => JSON.stringify(l)).join('\n') || '(none)'}`;
  }

  private get logFile(): string {
    return join(this.dir, 'daemon.log');
  }

  private get stderrFile(): string {
    return join(this.dir, 'daemon.stderr');
  }

  private policyFile(policy: string | object): string {
    if (typeof policy === 'string') return policy;
    const path = join(this.dir, 'policy.json');
    writeFileSync(path, JSON.stringify(policy), { mode: 0o644 });
    return path;
  }

  /** Resolves with `found()`'s first defined value; rejects on timeout or exit. */
  private until<T>(found: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      let poll: NodeJS.Timeout | undefined;
      const check = (): void => {
        const value = found();
        if (value !== undefined) finish(() => resolve(value));
        else if (this.exitInfo) finish(() => reject(new Error(`daemon exited (${JSON.stringify(this.exitInfo)}) before ${what}; ${this.describe()}`)));
      };
      const finish = (then: () => void): void => {
        clearTimeout(timer);
        clearInterval(poll);
        this.listeners.delete(check);
        then();
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.describe()}`))), timeoutMs);
      this.listeners.add(check);
      // Nothing pushes lines in 'file' mode: look again now and then.
      if (this.capture === 'file') poll = setInterval(check, 20);
      check();
    });
  }

  private onLine(text: string): void {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
      if (this.capture !== 'counts') this.kept.push(line);
    } catch {
      line = { msg: '(not JSON)', text };
      this.nonJsonStdout.push(text);
      if (this.capture === 'counts' && this.nonJsonStdout.length > TAIL) this.nonJsonStdout.shift();
    }
    const msg = String(line.msg);
    this.counts.set(msg, (this.counts.get(msg) ?? 0) + 1);
    this.tail.push(line);
    if (this.tail.length > TAIL) this.tail.shift();
    this.notify();
  }

  /** 'file' mode: takes in what the daemon appended to its log since the last call. */
  private readLogFile(): void {
    if (this.capture !== 'file' || this.removed) return;
    const fd = openSync(this.logFile, 'r');
    try {
      const buffer = Buffer.alloc(1 << 16);
      for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, this.fileOffset);
        if (n === 0) break;
        this.fileOffset += n;
        const lines = (this.partialLine + buffer.subarray(0, n).toString()).split('\n');
        this.partialLine = lines.pop()!;
        for (const line of lines) this.onLine(line);
      }
    } finally {
      closeSync(fd);
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** The daemon's resources at one moment, for t.log and comparisons. */
export interface Footprint {
  fds: number;
  rssBytes: number;
}

/** "fds 23, RSS 51.2 MiB" */
export function describeFootprint(f: Footprint): string {
  return `fds ${f.fds}, RSS ${(f.rssBytes / 1048576).toFixed(1)} MiB`;
}
