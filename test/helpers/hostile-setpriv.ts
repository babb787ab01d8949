/**
 * Runs one of the compiled helper scripts (dist/test/helpers/*.js) as another user through
 * setpriv (util-linux), so the daemon sees a real unprivileged peer in SO_PEERCRED, and
 * parses the one JSON line the script prints last.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, type TeardownHost } from '../../testkit/cleanup.js';
import { daemonArgv } from '../../testkit/repo.js';

/** The unprivileged user every Debian system has. */
export const NOBODY = 65534;

/** Runs helpers/<script> with `args` as uid = gid = `uid`; resolves with its last JSON line. */
export function runHelperAs<T>(uid: number, script: string, args: string[], timeoutMs = 60_000): Promise<T> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
  const argv = [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', process.execPath, path, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as T);
      } catch {
        reject(new Error(`${script} printed no result (exit ${code}, signal ${signal}); stderr: ${err.slice(-2000)}`));
      }
    });
  });
}

/**
 * Writes a policy file (removed in teardown) that lets NOBODY open the loop device `name`
 * read-only, non-exclusively — and nothing else — and checks it with --check-policy.
 */
export function nobodyReadOnlyPolicy(t: TeardownHost, name: string): string {
  const dir = tempDir(t, 'diskseqd-hostile-policy-');
  const policy = join(dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({
    rules: [{ name: 'hostile-nobody', peer: { uids: [NOBODY] }, device: { names: [name] }, access: ['read-only'], loop_devices: true }],
  }), { mode: 0o644 });
  const [node, ...args] = daemonArgv('--check-policy', policy);
  execFileSync(node!, args);
  return policy;
}

/** Lets other users reach a daemon's socket (its private directory is 0700). */
export function openToOthers(socketPath: string): void {
  chmodSync(dirname(socketPath), 0o755);
}

/**
 * Private device nodes (any depth under /dev/.diskseqd) for /dev/loop<index>: only the
 * daemon under test makes nodes for its test's loop, whatever other daemons do meanwhile.
 */
export function privateNodesOf(index: number, dir = '/dev/.diskseqd'): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, entry);
    try {
      const st = statSync(path);
      if (st.isBlockDevice() && st.rdev === makedev(7 /* loop */, index)) found.push(path);
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
