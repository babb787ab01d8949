/**
 * Runs the real daemon (bin/diskseqd.js) as a child process on a private socket for the
 * hostile tests, and watches it from outside: its open fds (/proc/<pid>/fd) and RSS.
 *
 * Unlike a general-purpose runner it does not keep every log line: a fuzz run makes the
 * daemon write well over 100,000 of them. It counts lines by `msg`, keeps the last few for
 * error messages, and lets a test wait for a line matching a predicate.
 * Always stopped in teardown (SIGTERM, then SIGKILL) and, as a safety net, at process exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT, SHEBANG_NODE_FLAGS } from '../../testkit/daemon.js';
import { fdCount, fdTargets, rssBytes } from '../../testkit/proc.js';


/** One parsed pino line. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** Anything with ava's teardown. */
export interface TeardownHost {
  teardown(fn: () => void | Promise<void>): void;
}

/** The daemon's resources at one moment, for t.log and comparisons. */
export interface Footprint {
  fds: number;
  rssBytes: number;
}

const TAIL = 20;
const running = new Set<ChildProcess>();
let exitHook = false;

/** A running daemon on a private socket (see the module comment). */
export class HostileDaemon {
  readonly socketPath: string;
  private readonly dir: string;
  private readonly child: ChildProcess;
  private readonly counts = new Map<string, number>();
  private readonly tail: LogLine[] = [];
  private stderr = '';
  private watchers: Array<{ match: (l: LogLine) => boolean; done: (l: LogLine | undefined) => void }> = [];
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;

  private constructor(extraArgs: string[]) {
    this.dir = mkdtempSync(join(tmpdir(), 'diskseqd-hostile-'));
    this.socketPath = join(this.dir, 'd.sock');
    // HOSTILE_DAEMON_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") is for diagnosis.
    const nodeArgs = [...SHEBANG_NODE_FLAGS, ...(process.env.HOSTILE_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')];
    this.child = spawn(process.execPath, [...nodeArgs, join(REPO_ROOT, 'bin', 'diskseqd.js'), '--socket', this.socketPath, ...extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(this.child);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const c of running) c.kill('SIGKILL');
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        running.delete(this.child);
        this.exitInfo = { code, signal };
        for (const w of this.watchers.splice(0)) w.done(undefined);
        resolve();
      });
    });
    createInterface({ input: this.child.stdout! }).on('line', (text) => this.onLine(text));
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
  }

  /** Starts a daemon with `extraArgs` and waits for its "serving" line; stopped in t's teardown. */
  static async start(t: TeardownHost | undefined, extraArgs: string[] = []): Promise<HostileDaemon> {
    const daemon = new HostileDaemon(extraArgs);
    t?.teardown(() => daemon.stop());
    if ((await daemon.waitForLog((l) => l.msg === 'serving', 10_000)) === undefined) {
      await daemon.stop();
      throw new Error(`the daemon did not start serving; ${daemon.describe()}`);
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

  /** How many log lines with this `msg` the daemon has written so far. */
  count(msg: string): number {
    return this.counts.get(msg) ?? 0;
  }

  /** Open fds of the daemon (entries of /proc/<pid>/fd). */
  fdCount(): number {
    return fdCount(this.pid);
  }

  /** The daemon's fds and what they point to, for a leak message. */
  fdTargets(): string[] {
    return fdTargets(this.pid);
  }

  /** VmRSS in bytes. */
  rssBytes(): number {
    return rssBytes(this.pid);
  }

  /** fd count and RSS now. */
  footprint(): Footprint {
    return { fds: this.fdCount(), rssBytes: this.rssBytes() };
  }

  /**
   * Polls the fd count until it equals `target` (a leak shows as a count that stays above
   * it) or `timeoutMs` passes; returns the last count. The wait is a settle, not a timing
   * assertion: the daemon closes some fds off its event loop.
   */
  async settleFds(target: number, timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let fds = this.fdCount();
    while (fds !== target && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
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
      await new Promise((r) => setTimeout(r, 50));
      const now = this.fdCount();
      same = now === last ? same + 1 : 0;
      last = now;
    }
    return last;
  }

  /** The first future (or last-seen) log line matching `match`; undefined on timeout or exit. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine | undefined> {
    const seen = this.tail.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    if (!this.alive) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const watcher = {
        match,
        done: (l: LogLine | undefined) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        this.watchers = this.watchers.filter((w) => w !== watcher);
        resolve(undefined);
      }, timeoutMs);
      this.watchers.push(watcher);
    });
  }

  /** Waits until `count(msg)` reaches `n`; returns the count then (or at the timeout). */
  async waitForCount(msg: string, n: number, timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.count(msg) < n && Date.now() < deadline && this.alive) await new Promise((r) => setTimeout(r, 20));
    return this.count(msg);
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; removes the temp dir. Idempotent. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Exit status, stderr and the last log lines, for failure messages. */
  describe(): string {
    return `exit ${JSON.stringify(this.exitInfo ?? 'running')}; stderr: ${this.stderr.trim() || '(empty)'}; ` +
      `last lines:\n${this.tail.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`;
  }

  private onLine(text: string): void {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { msg: '(not JSON)', text };
    }
    const msg = String(line.msg);
    this.counts.set(msg, (this.counts.get(msg) ?? 0) + 1);
    this.tail.push(line);
    if (this.tail.length > TAIL) this.tail.shift();
    for (const w of [...this.watchers]) {
      if (w.match(line)) {
        this.watchers = this.watchers.filter((x) => x !== w);
        w.done(line);
      }
    }
  }
}

/** "fds 23, RSS 51.2 MiB" */
export function describeFootprint(f: Footprint): string {
  return `fds ${f.fds}, RSS ${(f.rssBytes / 1048576).toFixed(1)} MiB`;
}
