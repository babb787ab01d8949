/**
 * The one gate for tests that need what a developer's machine may lack: root and loop
 * devices, a tool from a Debian package, the built shim. Call it first and `return` when
 * it gives false (or undefined).
 *
 * Outside CI a missing requirement is a loud skip: a banner on stderr and in the test's
 * log, and the test passes vacuously so the rest of its file still runs. Under CI (CI=true
 * or CI=1, as .ci/run and CI services set it) it is a failure, so a misconfigured runner
 * can never pass by skipping.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { SHIM_PATH } from '../../testkit/repo.js';

/** Whether this is a CI run, where a test that cannot run fails instead of skipping. */
export function inCi(): boolean {
  return process.env.CI === 'true' || process.env.CI === '1';
}

/**
 * The test cannot run, for `reason`: under CI it fails; elsewhere it is skipped loudly.
 * Returns false, for `return cannotRun(t, ...)`.
 */
export function cannotRun(t: ExecutionContext, reason: string): false {
  if (inCi()) {
    t.fail(`CI=${process.env.CI} and this test cannot run: ${reason}`);
    return false;
  }
  const banner = `SKIPPED (not a pass): ${t.title}: ${reason}. Set CI=true to make this fatal.`;
  console.warn(`\n*** ${banner} ***\n`);
  t.log(banner);
  t.pass();
  return false;
}

/** Why this process cannot run real-device tests, or undefined when it can. */
export function rootUnavailableReason(): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return `not running as root (uid ${process.getuid()}): loop devices and the daemon need root`;
  }
  try {
    accessSync('/dev/loop-control', constants.R_OK | constants.W_OK);
  } catch (error) {
    return `/dev/loop-control is not usable (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
  }
  return undefined;
}

/** True when the test may go on: root, and loop devices can be claimed. */
export function needsRoot(t: ExecutionContext): boolean {
  const reason = rootUnavailableReason();
  return reason === undefined || cannotRun(t, reason);
}

/** needsRoot, and the LD_PRELOAD shim must have been built (npm ci builds it). */
export function needsRootAndShim(t: ExecutionContext): boolean {
  if (!needsRoot(t)) return false;
  return existsSync(SHIM_PATH) || cannotRun(t, `${SHIM_PATH} is missing: build it with \`make -C native/preload\``);
}

/** Absolute path of `name` in the standard bin directories, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The path of a tool the test needs (from Debian package `pkg`), or undefined when the caller must return. */
export function needsTool(t: ExecutionContext, name: string, pkg = 'systemd'): string | undefined {
  const path = findTool(name);
  if (path !== undefined) return path;
  cannotRun(t, `${name} is not installed (apt-get install ${pkg})`);
  return undefined;
}
