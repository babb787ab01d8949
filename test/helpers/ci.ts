/**
 * The root/loop-device gate every real-device test calls first.
 *
 * Outside CI a missing privilege is a loud skip (the developer sees why nothing ran);
 * under CI=true it is a failure, so a misconfigured runner can never pass by skipping.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { SHIM_PATH } from '../../testkit/repo.js';

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

/**
 * Returns true when the test may go on. Otherwise: under CI=true the test fails with the
 * reason; elsewhere it logs a loud skip reason, passes vacuously and returns false.
 * Call it first and `return` when it gives false.
 */
export function needsRoot(t: ExecutionContext): boolean {
  const reason = rootUnavailableReason();
  if (reason === undefined) return true;
  if (process.env.CI === 'true') {
    t.fail(`CI=true and this test cannot run: ${reason}`);
    return false;
  }
  const banner = `SKIPPED (not a pass): ${t.title}: ${reason}. Run as root, or set CI=true to make this fatal.`;
  console.warn(`\n*** ${banner} ***\n`);
  t.log(banner);
  t.pass();
  return false;
}

/**
 * True when the test may go on: needsRoot's rules (fail under CI=true, loud skip
 * elsewhere), and the shim must have been built.
 */
export function needsRootAndShim(t: ExecutionContext): boolean {
  if (!needsRoot(t)) return false;
  if (existsSync(SHIM_PATH)) return true;
  t.fail(`${SHIM_PATH} is missing: build it with \`make -C native/preload\``);
  return false;
}
