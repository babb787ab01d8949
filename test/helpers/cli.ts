/**
 * Runs diskseq-open the way its users do: as root through bin/diskseq-open.js, or as an
 * unprivileged peer through peer-launcher.js, which loads dist/client/cli.js (whose main is
 * all that bin/diskseq-open.js runs) as root and drops privileges before main connects —
 * the daemon sees the peer, and the peer never needs to read the checkout.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_MODULE, cliArgv } from '../../testkit/repo.js';
import type { PeerIdentity } from '../../testkit/reachable.js';
import { peerArgv } from './peer.js';
import { runProcess, type RunResult } from './process.js';

export type { RunResult };

/** How to run the CLI. */
export interface CliOptions {
  /**
   * Variables for the CLI's environment, on top of this process's without DISKSEQD_SOCKET
   * and DISKSEQD_PRELOAD_LIBRARY (which a test sets itself when it means to).
   */
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
  delete env.DISKSEQD_PRELOAD_LIBRARY;
  return { ...env, ...extra };
}

/** Runs `diskseq-open ARGS` to its end and resolves with its exit status and output. */
export function runCli(args: string[], options: CliOptions = {}): Promise<RunResult> {
  const argv = options.as === undefined ? cliArgv(...args) : peerArgv(options.as, CLI_MODULE, args);
  return runProcess(argv, { env: cliEnv(options.env), timeoutMs: options.timeoutMs, cwd: options.as === undefined ? undefined : '/' });
}

/**
 * Makes `dir` (created, mode 0755) hold a `diskseq-open` that runs this checkout's, for
 * tests that run it as a shell or bash completion would: by name, from PATH. Returns `dir`.
 */
export function cliOnPath(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const exec = cliArgv().map((word) => JSON.stringify(word)).join(' ');
  writeFileSync(join(dir, 'diskseq-open'), `#!/bin/sh\nexec ${exec} "$@"\n`, { mode: 0o755 });
  return dir;
}
