/**
 * Shared pieces of the systemd tests: a datagram socket standing in for systemd's
 * NOTIFY_SOCKET, and child processes started the way systemd starts a socket-activated
 * service (fd 3 inherited, LISTEN_PID set to the child's own pid).
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { tempDir } from '../../testkit/cleanup.js';

interface DgramSocket {
  bind(path: string): void;
  close(): void;
  on(event: 'message', listener: (buf: Buffer) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as {
  createSocket(type: 'unix_dgram'): DgramSocket;
};

/** A bound AF_UNIX datagram socket that records every sd_notify message it receives. */
export class NotifyReceiver {
  readonly path: string;
  /** Every datagram so far, in order of arrival. */
  readonly messages: string[] = [];
  private readonly socket: DgramSocket;
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(t: ExecutionContext) {
    this.path = join(tempDir(t, 'diskseqd-notify-'), 'notify.sock');
    this.socket = unixDgram.createSocket('unix_dgram');
    this.socket.on('message', (buf) => {
      this.messages.push(buf.toString());
      for (const wake of this.waiters) wake();
    });
    let bindError: Error | undefined;
    this.socket.on('error', (err) => { bindError = err; });
    this.socket.bind(this.path);
    if (bindError) throw bindError;
    t.teardown(() => this.close());
  }

  /** Resolves with the index of the first message (from `from` on) that matches. */
  waitFor(match: (message: string) => boolean, timeoutMs = 10_000, from = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const index = this.messages.findIndex((m, i) => i >= from && match(m));
        if (index < 0) return false;
        cleanup();
        resolve(index);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching notify message in ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      if (!check()) this.waiters.add(check);
    });
  }

  /** Closes the socket; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

/** How a child process ended, and everything it wrote. */
export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A spawned child whose output is collected; killed in teardown if still running. */
export interface RunningChild {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<ChildResult>;
}

/**
 * Spawns `command args` through `sh` so that LISTEN_PID is the pid of the process that
 * finally runs (sh execs it), as systemd sets it. `fd3` becomes the child's fd 3.
 */
export function spawnActivated(
  t: ExecutionContext,
  command: string,
  args: string[],
  options: { fd3?: number; env?: NodeJS.ProcessEnv; listenFds?: string; listenPid?: string } = {},
): RunningChild {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, LISTEN_FDS: options.listenFds ?? '1' };
  delete env.LISTEN_PID;
  delete env.NOTIFY_SOCKET;
  const pid = options.listenPid ?? '$$';
  const stdio: StdioOptions = ['ignore', 'pipe', 'pipe'];
  if (options.fd3 !== undefined) stdio.push(options.fd3);
  return track(t, spawn('sh', ['-c', `LISTEN_PID=${pid} exec "$0" "$@"`, command, ...args], { env, stdio }));
}

/** Spawns a child with collected output; killed in teardown if still running. */
export function spawnTracked(
  t: ExecutionContext, command: string, args: string[], env: NodeJS.ProcessEnv, extraFds: number[] = [],
): RunningChild {
  return track(t, spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe', ...extraFds] }));
}

function track(t: ExecutionContext, child: ChildProcess): RunningChild {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<ChildResult>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}
