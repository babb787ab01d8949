/**
 * `node dist/bench/profile-load.js [OPENS]` (root): a V8 CPU profile of the daemon under
 * the four-connection load of the broker comparison (c-client, 4 connections x 1 request
 * in flight, OPENS opens in all, default 100000), and its top entries by self time: where
 * the JS thread's time goes, idle included. Not part of `npm run bench` (it is diagnosis);
 * the .cpuprofile is kept (its path is printed) for a closer look in Chrome's DevTools.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { buildCPrograms } from './c-programs.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self time per function (summed over the profile's nodes), largest first. */
export function topEntries(path: string, count = 20): { name: string; share: number }[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { nodes: ProfileNode[]; samples: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const hits = new Map<string, number>();
  for (const id of profile.samples) {
    const frame = byId.get(id)!.callFrame;
    const where = frame.url === '' ? '' : ` ${relative(REPO_ROOT, frame.url.replace(/^file:\/\//, ''))}:${frame.lineNumber + 1}`;
    const name = `${frame.functionName || '(anonymous)'}${where}`;
    hits.set(name, (hits.get(name) ?? 0) + 1);
  }
  return [...hits].sort((a, b) => b[1] - a[1]).slice(0, count).map(([name, n]) => ({ name, share: n / profile.samples.length }));
}

async function main(): Promise<void> {
  const opens = Number(process.argv[2] ?? 100_000);
  const programs = buildCPrograms();
  const loop = createLoop({});
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-profile-'));
  try {
    const daemon = await DaemonProcess.start({ capture: 'file', nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
    const run = spawnSync(programs.client, [daemon.socketPath, loop.diskseq.toString(), '4', String(opens)], { encoding: 'utf8' });
    await daemon.stop(30_000);
    if (run.status !== 0) throw new Error(`c-client failed: ${run.stderr}`);
    console.log(`load: ${run.stdout.trim()}`);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error(`no profile written in ${dir}`);
    console.log(`profile: ${join(dir, file)}\nself time, share of samples:`);
    for (const entry of topEntries(join(dir, file))) console.log(`${(entry.share * 100).toFixed(1).padStart(5)}%  ${entry.name}`);
  } finally {
    loop.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`profile failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
});
