/**
 * Runs a client as another uid/gid/groups (setpriv from util-linux drops root before
 * node starts), so the daemon sees a real unprivileged peer through SO_PEERCRED.
 * The daemon's socket must be reachable by that uid: start it with worldAccessible.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { PeerReport, PeerScript } from './peer-main.js';

export type { PeerReport, PeerScript, PeerStep, PeerStepResult } from './peer-main.js';

/** The user a peer runs as. */
export interface PeerIdentity {
  uid: number;
  gid: number;
  /** Supplementary groups (default: none). */
  groups?: number[];
}

/** The unprivileged user every Debian system has. */
export const NOBODY: PeerIdentity = { uid: 65534, gid: 65534 };

const PEER_MAIN = fileURLToPath(new URL('./peer-main.js', import.meta.url));

/** Runs `script` as `who` and resolves with the peer's report (rejects if it printed none). */
export function runPeer(who: PeerIdentity, script: PeerScript, timeoutMs = 15_000): Promise<PeerReport> {
  const groups = who.groups && who.groups.length > 0 ? [`--groups=${who.groups.join(',')}`] : ['--clear-groups'];
  const args = [`--reuid=${who.uid}`, `--regid=${who.gid}`, ...groups, '--', process.execPath, PEER_MAIN, JSON.stringify(script)];
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DISKSEQD_SOCKET: script.socket } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        const report = JSON.parse(line) as PeerReport;
        if (report.failure) reject(new Error(`peer failed: ${report.failure}\nstderr: ${stderr}`));
        else resolve(report);
      } catch {
        reject(new Error(`peer printed no report (exit ${code}, signal ${signal})\nstdout: ${stdout}\nstderr: ${stderr}`));
      }
    });
  });
}
