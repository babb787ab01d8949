/**
 * Runs diskseq-open the way its users do, through bin/diskseq-open.js, as root or (through
 * setpriv) as another user, without blocking the event loop, and collects what it wrote.
 */
import { spawn } from 'node:child_process';
import { cliArgv } from '../../testkit/repo.js';
import type { PeerIdentity } from '../../testkit/reachable.js';

/** Exit status and output of a finished process. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout, one character per byte (latin1): device bytes and markers compare exactly. */
  stdout: string;
  stderr: string;
}

/** How to run the CLI. */
export interface CliOptions {
  /** Variables for the CLI's environment, on top of this process's without DISKSEQD_SOCKET. */
  env?: NodeJS.ProcessEnv;
  /** Run as this user (from `/` as the working directory). */
  as?: PeerIdentity;
  /** SIGKILL after this long (default 15 s). */
  timeoutMs?: number;
}

/** The environment runCli gives the CLI. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DISKSEQD_SOCKET;
  return { ...env, ...extra };
}

/** Runs `diskseq-open ARGS` to its end and resolves with its exit status and output. */
export function runCli(args: string[], options: CliOptions = {}): Promise<RunResult> {
  const who = options.as;
  const argv = cliArgv(...args);
  const [command, ...rest] = who === undefined ? argv : [
    'setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`,
    who.groups && who.groups.length > 0 ? `--groups=${who.groups.join(',')}` : '--clear-groups', '--', ...argv,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv(options.env), cwd: who === undefined ? undefined : '/' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('latin1').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
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
