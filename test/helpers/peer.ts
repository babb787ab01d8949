/**
 * Runs programs as unprivileged peers, so that the daemon sees another uid, gid and
 * supplementary groups through SO_PEERCRED and SO_PEERGROUPS. Every peer starts as root
 * through peer-launcher.js, which loads the program and drops privileges before the
 * program connects (become-peer.ts): no peer ever needs to read the checkout, which may
 * live under a directory others cannot enter. The daemon's socket must be reachable by the
 * peer: start the daemon with worldAccessible.
 */
import { fileURLToPath } from 'node:url';
import { NOBODY, whyUnreachable, type PeerIdentity } from '../../testkit/reachable.js';
import type { PeerReport, PeerScript } from './peer-main.js';
import { runProcess, type RunResult } from './process.js';

export { NOBODY, type PeerIdentity };
export type { PeerReport, PeerScript, PeerStep, PeerStepResult } from './peer-main.js';

const LAUNCHER = fileURLToPath(new URL('./peer-launcher.js', import.meta.url));

/** The compiled helper program `name` of this directory, e.g. 'peer-fuzz.js'. */
export function helperProgram(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}

/** argv that runs `program` (a module exporting main, see peer-launcher.ts) as `who`. */
export function peerArgv(who: PeerIdentity, program: string, args: string[]): string[] {
  const identity = JSON.stringify({ uid: who.uid, gid: who.gid, groups: who.groups ?? [] });
  return [process.execPath, LAUNCHER, identity, program, ...args];
}

/** How to run a peer. */
export interface PeerRunOptions {
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long (default 15 s). */
  timeoutMs?: number;
  /** Paths the peer must reach (its socket ...): named in the error when it cannot. */
  needs?: string[];
}

/** Runs `program` as `who`, with `/` as its working directory, and collects its output. */
export function runAsPeer(who: PeerIdentity, program: string, args: string[], options: PeerRunOptions = {}): Promise<RunResult> {
  return runProcess(peerArgv(who, program, args), { env: options.env, timeoutMs: options.timeoutMs, cwd: '/' });
}

/**
 * A peer run's failure in words: its status and stderr, and — when a directory's
 * permissions are the reason — which directory keeps `who` from what it needed (a path in
 * `needs`, or one its error names, e.g. "Cannot find module '/root/diskseqd/dist/...'").
 */
export function describePeerFailure(who: PeerIdentity, run: RunResult, needs: string[] = []): string {
  const lines = [`exit ${run.code ?? run.signal}`, `stderr: ${run.stderr.trim().slice(-2000) || '(empty)'}`];
  const named = run.stderr.match(/\/[^\s'"`:,()]+/g) ?? [];
  const blocked = new Set<string>();
  for (const path of [...needs, ...named]) {
    const why = whyUnreachable(path, who);
    if (why !== undefined && blocked.size < 3) blocked.add(why);
  }
  for (const why of blocked) lines.push(`uid ${who.uid} cannot reach what it needs: ${why}`);
  if (blocked.size > 0) {
    lines.push('a peer must not need to read the checkout (it may live under /root): it loads what it needs as root ' +
      'and drops privileges before it connects (test/helpers/become-peer.ts)');
  }
  return lines.join('\n');
}

/**
 * Runs the helper program `name` as `who` and resolves with the JSON value of the last line
 * it printed. Rejects, with the reason, when it exits non-zero or prints no JSON.
 */
export async function runPeerProgram<T>(who: PeerIdentity, name: string, args: string[], options: PeerRunOptions = {}): Promise<T> {
  const run = await runAsPeer(who, helperProgram(name), args, options);
  const last = run.stdout.trim().split('\n').pop() ?? '';
  let value: T;
  try {
    value = JSON.parse(last) as T;
  } catch {
    throw new Error(`${name} as uid ${who.uid} printed no result; ${describePeerFailure(who, run, options.needs)}\nstdout: ${run.stdout.slice(-2000)}`);
  }
  if (run.code !== 0) throw new Error(`${name} as uid ${who.uid} failed; ${describePeerFailure(who, run, options.needs)}`);
  return value;
}

/** Runs `script` (peer-main.ts) as `who` and resolves with the peer's report (rejects if it failed). */
export async function runPeer(who: PeerIdentity, script: PeerScript, timeoutMs = 60_000): Promise<PeerReport> {
  const report = await runPeerProgram<PeerReport>(who, 'peer-main.js', [JSON.stringify(script)], {
    env: { ...process.env, DISKSEQD_SOCKET: script.socket }, timeoutMs, needs: [script.socket],
  });
  if (report.failure) {
    const why = whyUnreachable(script.socket, who);
    throw new Error(`peer failed: ${report.failure}${why === undefined ? '' : `\nuid ${who.uid} cannot reach the socket: ${why}`}`);
  }
  return report;
}
