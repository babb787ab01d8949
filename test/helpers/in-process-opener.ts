/**
 * The daemon's open path in this process, wired as src/main.ts wires it but without the
 * uevent socket (the index changes only when a test refreshes or rescans it), so a test
 * can count the native jobs an open costs (native.jobPoolStats) and hand the opener a
 * policy provider of its own. Private nodes go to a directory of this test's own on
 * devtmpfs, never the daemon's /dev/.diskseqd.
 */
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { native } from '../../native/index.js';
import { createLogger } from '../../src/log.js';
import { Opener, type OpenParams, type OpenTrace, type VerifiedOpen } from '../../src/opener.js';
import type { Peer, Policy } from '../../src/policy/index.js';
import { PrivateNodes } from '../../src/private-nodes.js';
import { Registry } from '../../src/registry.js';
import { Sysfs } from '../../src/sysfs.js';

/** uid 65534 as SO_PEERCRED would describe it. */
export const NOBODY_PEER: Peer = { uid: 65534, gid: 65534, pid: process.pid, groups: [] };
export const ROOT_PEER: Peer = { uid: 0, gid: 0, pid: process.pid, groups: [] };

/** An opener over the real /sys, its registry scanned once, torn down with the test. */
export function inProcessOpener(t: ExecutionContext, policy: () => Policy): { opener: Opener; registry: Registry } {
  const log = createLogger('silent');
  const sysfs = new Sysfs('/sys');
  const registry = new Registry(sysfs, log);
  registry.scan();
  const nodesRoot = mkdtempSync('/dev/.diskseqd-test-');
  const nodes = new PrivateNodes(nodesRoot);
  t.teardown(() => {
    nodes.close();
    rmSync(nodesRoot, { recursive: true, force: true });
  });
  return { opener: new Opener(registry, sysfs, policy, nodes, log), registry };
}

/** An open request with the defaults of the wire (read-only, nothing else). */
export function openParams(diskseq: bigint, more: Partial<OpenParams> = {}): OpenParams {
  return {
    diskseq, partition: 0, access: 'read-only', exclusive: false, direct: false, nonblock: false, sync: false, dsync: false,
    expect: new Map(), waitMs: 0, ...more,
  };
}

/** The jobs submitted to the addon's pool while `run` ran, by kind (only kinds that changed). */
export async function countJobs<T>(run: () => Promise<T>): Promise<{ result: T | Error; jobs: Record<string, number> }> {
  const before = native.jobPoolStats().submitted;
  let result: T | Error;
  try {
    result = await run();
  } catch (error) {
    result = error as Error;
  }
  const after = native.jobPoolStats().submitted;
  const jobs: Record<string, number> = {};
  for (const [kind, n] of Object.entries(after)) if (n !== (before[kind] ?? 0)) jobs[kind] = n - (before[kind] ?? 0);
  return { result, jobs };
}

/** Opens and returns what the opener gave, with a trace. */
export async function open(opener: Opener, params: OpenParams, peer: Peer): Promise<{ opened: VerifiedOpen; trace: OpenTrace }> {
  const trace: OpenTrace = {};
  return { opened: await opener.open(params, peer, trace), trace };
}
