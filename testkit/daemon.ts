/**
 * Runs the real daemon (bin/diskseqd.js) as a child process on a private socket, keeps
 * its pino JSON log lines parsed for the test to search (one audit line per request), and
 * exposes what the test needs to watch it from outside: its open fd count and RSS.
 * Always stopped in teardown (SIGTERM, then SIGKILL after a timeout) and at process exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { native } from '../native/index.js';
import type { TeardownHost } from './loop.js';
import { fdCount, fdTargets, rssBytes } from './proc.js';

/** The repository root (this file runs from dist/testkit/). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The node flags of bin/diskseqd.js's `#!/usr/bin/env -S node ...` line: tests run what users run. */
export const SHEBANG_NODE_FLAGS: string[] = readFileSync(join(REPO_ROOT, 'bin', 'diskseqd.js'), 'utf8').split('\n')[0]!
  .split(/\s+/).filter((word) => word.startsWith('--'));

/** One parsed pino line. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

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

/** How to start the daemon. */
export interface DaemonOptions {
  /** Options for node itself, before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Socket path (default: d.sock in a fresh temp dir). */
  socketPath?: string;
  /** Log level (default info: audit lines are info). */
  logLevel?: string;
  sysfsRoot?: string;
  policy?: string;
  extraArgs?: string[];
  /** Make the socket reachable by other uids (dir 0755, socket 0666), for peer tests. */
  worldAccessible?: boolean;
  /** How long to wait for the "serving" line (default 10 s). */
  readyTimeoutMs?: number;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** A running daemon. */
export class DaemonProcess {
  readonly socketPath: string;
  readonly dir: string;
  /** Every JSON line written to stdout so far, parsed. */
  readonly logs: LogLine[] = [];
  /** stdout lines that were not JSON, and all of stderr. */
  stderr = '';
  readonly nonJsonStdout: string[] = [];
  private readonly child: ChildProcess;
  private readonly listeners = new Set<() => void>();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(options: DaemonOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'diskseqd-daemon-'));
    if (options.worldAccessible) chmodSync(this.dir, 0o755);
    this.socketPath = options.socketPath ?? join(this.dir, 'd.sock');
    const args = [join(REPO_ROOT, 'bin', 'diskseqd.js'), '--socket', this.socketPath, '--log-level', options.logLevel ?? 'info'];
    if (options.sysfsRoot) args.push('--sysfs-root', options.sysfsRoot);
    if (options.policy) args.push('--policy', options.policy);
    args.push(...(options.extraArgs ?? []));
    this.child = spawn(process.execPath, [...(options.nodeArgs ?? SHEBANG_NODE_FLAGS), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(this.child);
    installExitHook();
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        running.delete(this.child);
        this.exitInfo = { code, signal };
        this.notify();
        resolve(this.exitInfo);
      });
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.nonJsonStdout.push(line);
      }
      this.notify();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
  }

  /**
   * Starts a daemon and waits until it logs "serving". Stop is registered on `t` (when
   * given) and at process exit.
   */
  static async start(options: DaemonOptions = {}, t?: TeardownHost): Promise<DaemonProcess> {
    const daemon = new DaemonProcess(options);
    t?.teardown(async () => {
      await daemon.stop();
    });
    try {
      const timeoutMs = options.readyTimeoutMs ?? 10_000;
      // The "serving" line is at info; at quieter levels, readiness is a connectable socket.
      if (['trace', 'debug', 'info'].includes(options.logLevel ?? 'info')) {
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

  /** Exit status once it has exited. */
  get exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** The audit lines so far. */
  audits(): AuditLine[] {
    return this.logs.filter((l): l is AuditLine => l.msg === 'audit');
  }

  /** Number of fds the daemon has open (readdir /proc/<pid>/fd). */
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

  /**
   * Resolves with the first log line (already seen or future) matching `predicate`;
   * rejects after `timeoutMs` or when the daemon exits first, quoting its stderr.
   */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 5000, what = 'a matching log line'): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): void => {
        const found = this.logs.find(predicate);
        if (found) finish(() => resolve(found));
        else if (this.exitInfo) finish(() => reject(new Error(`daemon exited (${JSON.stringify(this.exitInfo)}) before ${what}; ${this.describeOutput()}`)));
      };
      const finish = (then: () => void): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        then();
      };
      timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.describeOutput()}`))), timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves once a SEQPACKET connect to the socket succeeds; rejects on timeout or exit. */
  async waitConnectable(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        native.close(native.connectSeqpacket(this.socketPath, false));
        return;
      } catch (error) {
        if (this.exitInfo) throw new Error(`daemon exited (${JSON.stringify(this.exitInfo)}) before serving; ${this.describeOutput()}`);
        if (Date.now() > deadline) throw new Error(`socket ${this.socketPath} not connectable after ${timeoutMs} ms (${(error as Error).message}); ${this.describeOutput()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Polls fdCount() until it is <= target or `timeoutMs` passes; returns the last count. */
  async settleFdCount(target: number, timeoutMs = 3000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let count = this.fdCount();
    while (count > target && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      count = this.fdCount();
    }
    return count;
  }

  /** Resolves with the exit status once the daemon exits on its own (no signal sent). */
  waitForExit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exited;
  }

  /** SIGTERM, wait for exit (SIGKILL after `timeoutMs`), remove the temp dir; idempotent. */
  async stop(timeoutMs = 5000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.exitInfo) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
    return this.exitInfo!;
  }

  /** The last lines of output, for error messages. */
  describeOutput(): string {
    const tail = (s: string): string => s.split('\n').slice(-15).join('\n');
    return `stderr:\n${tail(this.stderr) || '(empty)'}\nstdout (non-JSON):\n${tail(this.nonJsonStdout.join('\n')) || '(empty)'}\nlast log lines:\n${this.logs.slice(-5).map((l) => JSON.stringify(l)).join('\n') || '(none)'}`;
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}
