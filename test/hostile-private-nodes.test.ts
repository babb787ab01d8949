// An unprivileged peer gets its fd through a private device node (DESIGN.md, Policy:
// reopening) that the daemon creates and unlinks per open. Under an open flood — and while
// a second daemon instance starts on the same machine, as happens whenever two test files
// or a test instance and the system daemon run at once — every open must still be
// delivered, no node may be left behind, and no fd may leak.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { needsRoot } from './helpers/ci.js';
import { describeFootprint, HostileDaemon } from './helpers/hostile-daemon.js';
import { createLoop } from './helpers/loop.js';

const FLOOD = fileURLToPath(new URL('./helpers/hostile-open-flood.js', import.meta.url));
const NOBODY = 65534;
const NODE_DIR = '/dev/.diskseqd';
const LOOP_MAJOR = 7;
const OPENS = 8000;

/**
 * Block device nodes under `dir` (any depth) for /dev/loop<index>: only the daemon under
 * test makes nodes for this test's loop, whatever other daemons on the machine do.
 */
function nodesOf(dir: string, index: number): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, entry);
    try {
      const st = statSync(path);
      if (st.isBlockDevice() && st.rdev === makedev(LOOP_MAJOR, index)) found.push(path);
    } catch {
      // Removed while we looked: not left behind.
    }
  }
  return found;
}

/** Linux's dev_t encoding (glibc makedev), as st_rdev reports it. */
function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Runs the open flood as uid/gid `NOBODY`; resolves with its outcome counts. */
function flood(socketPath: string, diskseq: bigint, count: number): Promise<Record<string, number>> {
  const args = [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, FLOOD, socketPath, diskseq.toString(), String(count), '16'];
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('close', (code) => {
      try {
        resolve(JSON.parse(out.trim()) as Record<string, number>);
      } catch {
        reject(new Error(`flood printed no result (exit ${code}); stderr: ${err}`));
      }
    });
  });
}

test('an unprivileged open flood, with a second daemon starting meanwhile: all delivered, no node or fd left', async (t) => {
  if (!needsRoot(t)) return;
  t.timeout(90_000);
  const loop = createLoop({}, t);
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-hostile-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const policy = join(dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({
    rules: [{ name: 'hostile-nobody', peer: { uids: [NOBODY] }, device: { names: [loop.name] }, access: ['read-only'], loop_devices: true }],
  }), { mode: 0o644 });
  execFileSync(process.execPath, [join(dirname(FLOOD), '../../../bin/diskseqd.js'), '--check-policy', policy]);
  const daemon = await HostileDaemon.start(t, ['--policy', policy]);
  // The peer must reach the socket: open up the daemon's private directory.
  chmodSync(dirname(daemon.socketPath), 0o755);
  const warm = await flood(daemon.socketPath, loop.diskseq, 20);
  t.deepEqual(warm, { opened: 20 }, 'warm-up: nobody may open the loop read-only');
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);

  let flooding = true;
  const outcomesPromise = flood(daemon.socketPath, loop.diskseq, OPENS).finally(() => (flooding = false));
  // Meanwhile other daemons keep starting (and stopping) on the same machine.
  let others = 0;
  while (flooding) {
    const other = await HostileDaemon.start(undefined);
    await other.stop();
    others++;
  }
  const outcomes = await outcomesPromise;
  t.log(`flood of ${OPENS} opens as uid ${NOBODY}, while ${others} other daemons started: ${JSON.stringify(outcomes)}`);
  t.deepEqual(outcomes, { opened: OPENS }, 'every open delivered, with one fd each');

  const fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after: ${describeFootprint(after)}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
  t.deepEqual(nodesOf(NODE_DIR, loop.index), [], `nodes of ${loop.name} left in ${NODE_DIR}`);
});
