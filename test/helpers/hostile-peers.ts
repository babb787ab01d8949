/**
 * What the hostile tests with an unprivileged peer share: the policy that lets nobody read
 * one loop device (and nothing else), and a look for private device nodes left behind.
 * The peers themselves run through peer.ts's runPeerProgram.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TeardownHost } from '../../testkit/cleanup.js';
import { NOBODY } from '../../testkit/reachable.js';
import { daemonArgv } from '../../testkit/repo.js';

/**
 * Writes a policy file (removed in teardown) that lets NOBODY open the loop device `name`
 * read-only, non-exclusively — and nothing else — and checks it with --check-policy.
 */
export function nobodyReadOnlyPolicy(t: TeardownHost, name: string): string {
  const dir = tempDir(t, 'diskseqd-hostile-policy-');
  const policy = join(dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({
    rules: [{ name: 'hostile-nobody', peer: { uids: [NOBODY.uid] }, device: { names: [name] }, access: ['read-only'], loop_devices: true }],
  }), { mode: 0o644 });
  const [node, ...args] = daemonArgv('--check-policy', policy);
  execFileSync(node!, args);
  return policy;
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
