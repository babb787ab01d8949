/**
 * A long-running peer program driven line by line: started through peer-launcher.js as
 * another user (peer.ts's peerArgv), it prints one JSON line per step and reads commands
 * on stdin. Killed in teardown if it is still running.
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { helperProgram, peerArgv, type PeerIdentity } from './peer.js';

export class LinePeer {
  private readonly lines: string[] = [];
  private readonly waiters: Array<() => void> = [];
  private readonly exited: Promise<unknown>;
  private stderr = '';

  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      for (const wake of this.waiters.splice(0)) wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => { this.stderr = (this.stderr + chunk.toString()).slice(-2000); });
    this.exited = once(child, 'exit');
  }

  /** Starts the helper program `name` (test/helpers/) as `who` with `args`, cwd `/`. */
  static start(t: ExecutionContext, who: PeerIdentity, name: string, args: string[]): LinePeer {
    const [node, ...argv] = peerArgv(who, helperProgram(name), args);
    const peer = new LinePeer(spawn(node!, argv, { stdio: ['pipe', 'pipe', 'pipe'], cwd: '/' }));
    t.teardown(() => peer.kill());
    return peer;
  }

  /** The next JSON line it prints (rejects after `timeoutMs`, or when it exits first). */
  async next<T>(timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(`the peer printed nothing (exit ${this.child.exitCode}); stderr: ${this.stderr || '(empty)'}`);
      }
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
    return JSON.parse(this.lines.shift()!) as T;
  }

  /** Writes one command line to its stdin. */
  tell(command: string): void {
    this.child.stdin!.write(`${command}\n`);
  }

  /** Tells it `exit` and waits until it has. */
  async exit(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.tell('exit');
      await this.exited;
    }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
