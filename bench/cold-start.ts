/**
 * Cold start: from exec of bin/diskseqd.js to READY=1 on NOTIFY_SOCKET, as systemd sees it
 * (target: at most 1.5x the bare-Node floor below, measured in the same run). Each run
 * starts a fresh daemon on its own socket, waits for READY=1, stops it with SIGTERM and
 * waits for its exit before the next run.
 *
 * The floor, measured in the same run and interleaved with the daemon runs: a Node process
 * that does nothing but load unix-dgram and send READY=1. On a loaded 2-core machine
 * absolute times drift a lot; daemon/floor is the figure to compare between runs.
 *
 * Run: npm run build && node dist/bench/cold-start.js [RUNS]   (default 10; prints JSON)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_SCRIPT } from '../testkit/repo.js';

interface DgramSocket {
  bind(path: string): void;
  close(): void;
  on(event: 'message', listener: (buf: Buffer) => void): void;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(type: 'unix_dgram'): DgramSocket };

/** Milliseconds from spawn() to READY=1 for each run, and their median. */
export interface Timings {
  runs: number[];
  medianMs: number;
  minMs: number;
  maxMs: number;
}

/** The daemon's timings, the bare-Node floor's, and the ratio of the medians. */
export interface ColdStartResult {
  daemon: Timings;
  nodeFloor: Timings;
  ratio: number;
}

const FLOOR_SCRIPT = `
process.on('SIGTERM', () => process.exit(0));
const d = require(${JSON.stringify(createRequire(import.meta.url).resolve('unix-dgram'))});
const s = d.createSocket('unix_dgram');
const b = Buffer.from('READY=1');
s.send(b, 0, b.length, process.env.NOTIFY_SOCKET, () => s.close());
setInterval(() => {}, 1000);`;

/** Starts the daemon `runs` times and measures exec -> READY=1. */
export async function coldStart(runs = 10): Promise<ColdStartResult> {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-cold-start-'));
  const notifyPath = join(dir, 'notify.sock');
  const notify = unixDgram.createSocket('unix_dgram');
  let onReady: (() => void) | undefined;
  notify.on('message', (buf) => {
    if (buf.toString().split('\n').includes('READY=1')) onReady?.();
  });
  notify.bind(notifyPath);
  const daemon: number[] = [];
  const floor: number[] = [];
  const setOnReady = (cb: () => void): void => { onReady = cb; };
  try {
    for (let i = 0; i < runs; i++) {
      const socketPath = join(dir, `d${i}.sock`);
      // Through the script's own shebang (and its Node flags), as systemd starts it.
      daemon.push(await oneStart(DAEMON_SCRIPT,
        ['--socket', socketPath, '--runtime-dir', join(dir, `run${i}`), '--log-level', 'warn', '--no-varlink'], notifyPath, setOnReady));
      floor.push(await oneStart(process.execPath, ['-e', FLOOR_SCRIPT], notifyPath, setOnReady));
    }
  } finally {
    notify.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const d = timings(daemon);
  const f = timings(floor);
  return { daemon: d, nodeFloor: f, ratio: round(d.medianMs / f.medianMs) };
}

function timings(times: number[]): Timings {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { runs: times.map(round), medianMs: round(medianMs), minMs: round(sorted[0]), maxMs: round(sorted[sorted.length - 1]) };
}

function oneStart(command: string, args: string[], notifyPath: string, setOnReady: (cb: () => void) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: notifyPath };
    for (const key of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete env[key];
    const start = process.hrtime.bigint();
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let elapsed: number | undefined;
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const timeout = setTimeout(() => child.kill('SIGKILL'), 30_000);
    setOnReady(() => {
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
      child.kill('SIGTERM');
    });
    child.once('close', (code, signal) => {
      clearTimeout(timeout);
      if (elapsed !== undefined && code === 0) resolve(elapsed);
      else reject(new Error(`daemon ended (code ${code}, signal ${signal}) before READY=1: ${stderr}`));
    });
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const runs = Number(process.argv[2] ?? 10);
  const result = await coldStart(runs);
  console.log(JSON.stringify({ bench: 'cold-start', node: process.version, what: 'exec -> READY=1', ...result }));
}
