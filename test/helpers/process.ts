/**
 * Runs a program to its end and collects what it wrote, without blocking the event loop
 * (a daemon of the test's own may be writing its log into a pipe this process reads).
 */
import { spawn } from 'node:child_process';

/** Exit status and output of a finished process. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout, one character per byte (latin1): device bytes and markers compare exactly. */
  stdout: string;
  stderr: string;
}

/** How to run it. */
export interface RunProcessOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * SIGKILL after this long (default 60 s: a backstop for a hung child, generous because a
   * shared CI machine under load can take seconds to start node); the result then has
   * signal SIGKILL.
   */
  timeoutMs?: number;
  /** SIGINT once stdout so far matches this: for a program that runs until interrupted (--watch). */
  interruptWhen?: RegExp;
}

/** Runs `argv` and resolves with its exit status and output (rejects only when it cannot start). */
export function runProcess(argv: string[], options: RunProcessOptions = {}): Promise<RunResult> {
  const [command, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env, cwd: options.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('latin1').on('data', (c: string) => {
      stdout += c;
      if (options.interruptWhen?.test(stdout)) child.kill('SIGINT');
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
