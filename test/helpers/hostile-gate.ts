/**
 * The root gate of the hostile tests: they attach loop devices and open them through the
 * daemon. Outside CI a missing privilege is a loud skip; under CI=true it is a failure.
 */
import { accessSync, constants } from 'node:fs';
import type { ExecutionContext } from 'ava';

/** Returns true when the test may go on; otherwise skips loudly (or fails under CI=true). */
export function needsRoot(t: ExecutionContext): boolean {
  let reason: string | undefined;
  if (process.getuid?.() !== 0) reason = `not running as root (uid ${process.getuid?.()})`;
  else {
    try {
      accessSync('/dev/loop-control', constants.R_OK | constants.W_OK);
    } catch (error) {
      reason = `/dev/loop-control is not usable (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
    }
  }
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
