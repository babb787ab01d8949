/**
 * The Python client's open round trip against the TypeScript client's, in one run, on one
 * daemon and one loop device: sequential opens (one request at a time on one connection),
 * request sent -> verified fd in hand, each client's own re-check of the fd included. The
 * Python series run bench/python-open-roundtrip.py in the venvs scripts/setup-python-venvs.sh
 * makes (Debian's protobuf 4.21, the index's newest); the TypeScript series runs before and
 * after them, so drift on this noisy VM shows. Ratios are against the TypeScript p50.
 *
 * Run as root: `node dist/bench/python-client.js` (also part of `npm run bench`).
 * BENCH_PY_N (default 10000) opens per series; BENCH_LOG_LEVEL the daemon's (default info).
 * DISKSEQD_PY_VENVS as for the setup script.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../client/index.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { createLoop } from '../testkit/loop.js';
import { libraryRoundTrip, type Series } from './open-roundtrip.js';

const N = Number(process.env.BENCH_PY_N ?? 10_000);
const VENVS = process.env.DISKSEQD_PY_VENVS ?? '/opt/diskseqd-test/venvs';
const SCRIPT = join(REPO_ROOT, 'bench', 'python-open-roundtrip.py');

interface PythonSeries extends Series {
  protobuf: string;
  implementation: string;
}

/** Runs one Python series. Not spawnSync: the daemon's log pipe must keep draining meanwhile. */
async function python(venv: string, socketPath: string, diskseq: bigint, aio: boolean): Promise<PythonSeries | string> {
  const interpreter = join(VENVS, venv, 'bin', 'python');
  if (!existsSync(interpreter)) return `${interpreter} missing (scripts/setup-python-venvs.sh)`;
  const args = [SCRIPT, '--socket', socketPath, '--diskseq', diskseq.toString(), '--n', String(N), ...(aio ? ['--aio'] : [])];
  const child = spawn(interpreter, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (status !== 0) throw new Error(`${interpreter} ${args.join(' ')} failed (${status}): ${stderr}`);
  const result = JSON.parse(stdout.trim().split('\n').pop()!) as Omit<PythonSeries, 'name'> & { client: string };
  return { ...result, name: `Python ${result.client} client, protobuf ${result.protobuf} (${result.implementation}), ${venv} venv` };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (loop devices, and the daemon opens devices)');
  const loop = createLoop({});
  const daemon = await DaemonProcess.start({ logLevel: process.env.BENCH_LOG_LEVEL ?? 'info' });
  const client = await connect({ socketPath: daemon.socketPath });
  try {
    await libraryRoundTrip(client, loop.diskseq, 500); // warm-up
    const rows: (Series | string)[] = [];
    const first = await libraryRoundTrip(client, loop.diskseq, N);
    first.name = 'TypeScript client (client/index.js), first';
    rows.push(first);
    for (const venv of ['debian', 'pypi']) rows.push(await python(venv, daemon.socketPath, loop.diskseq, false));
    rows.push(await python('pypi', daemon.socketPath, loop.diskseq, true));
    const again = await libraryRoundTrip(client, loop.diskseq, N);
    again.name = 'TypeScript client (client/index.js), again';
    rows.push(again);
    const floor = Math.min(first.p50, again.p50);
    console.log(`\nopen round trip, sequential, ${N} opens per series, loop device ${loop.name} (microseconds)\n`);
    console.log(`${'series'.padEnd(72)}${'p50'.padStart(8)}${'p99'.padStart(8)}${'mean'.padStart(8)}${'p50 / TS'.padStart(10)}`);
    for (const row of rows) {
      if (typeof row === 'string') {
        console.log(`(skipped: ${row})`);
        continue;
      }
      console.log(`${row.name.padEnd(72)}${row.p50.toFixed(1).padStart(8)}${row.p99.toFixed(1).padStart(8)}${row.mean.toFixed(1).padStart(8)}${(row.p50 / floor).toFixed(2).padStart(9)}x`);
    }
  } finally {
    client.close();
    await daemon.stop();
    loop.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
});
