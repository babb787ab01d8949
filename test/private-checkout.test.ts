/**
 * Tests pass wherever the checkout lives, also under a directory others cannot enter:
 * /root is mode 0700, and that is where root clones. A copy of this built checkout under
 * a 0700 directory runs the representative unprivileged-peer cases from there (one case,
 * not the suite): a peer open through the client library, a tool under the shim and the
 * CLI, plain and with --preload, all as uid 65534 — while a control shows that uid 65534
 * really cannot read anything in the copy. And when a peer does depend on the checkout,
 * its error names the directory in the way.
 */
import test from 'ava';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../testkit/cleanup.js';
import { NOBODY, whyUnreachable } from '../testkit/reachable.js';
import { needsRootAndShim } from './helpers/ci.js';
import { describePeerFailure } from './helpers/peer.js';
import { copyBuiltCheckout } from './helpers/private-checkout.js';
import type { PrivateCheckoutReport } from './helpers/private-checkout-scenario.js';
import { runProcess } from './helpers/process.js';

/** A copy of the built checkout in a fresh directory of mode 0700; removed at teardown. */
function privateCopy(t: Parameters<typeof tempDir>[0]): { outer: string; copy: string } {
  const outer = tempDir(t, 'diskseqd-private-');
  const copy = join(outer, 'checkout');
  copyBuiltCheckout(copy);
  return { outer, copy };
}

test('from a checkout under a 0700 directory, uid 65534 opens, reads through the shim and runs the CLI', async (t) => {
  if (!needsRootAndShim(t)) return;
  const { outer, copy } = privateCopy(t);
  t.is(statSync(outer).mode & 0o777, 0o700, 'the copy sits in a directory only root may enter');

  const run = await runProcess([process.execPath, join(copy, 'dist', 'test', 'helpers', 'private-checkout-scenario.js')], { timeoutMs: 90_000 });
  t.is(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout.trim().split('\n').pop() ?? 'null') as PrivateCheckoutReport;
  t.is(report.repoRoot, `${copy}/`, 'the scenario ran the copy\'s code');
  // The control: the copy really is out of uid 65534's reach.
  t.regex(report.unreachable ?? '', new RegExp(`^directory ${outer} \\(mode 0700, owner uid 0`));
  t.not(report.control.status, 0, 'uid 65534 cannot read the copy');
  t.regex(report.control.stderr, /Permission denied/);

  t.is(report.peer.uid, NOBODY.uid, 'the peer really ran as nobody');
  t.is(report.peer.gid, NOBODY.gid);
  t.deepEqual(report.peer.groups.filter((g) => g !== NOBODY.gid), [], 'no supplementary groups (getgroups lists the gid too)');
  t.deepEqual(report.peer.results, [{ ok: true, name: report.name, fdDiskseq: report.diskseq, marker: report.marker }]);
  t.is(report.shim.status, 0, `dd under the shim: ${report.shim.stderr}`);
  t.is(report.shim.stdout, report.marker);
  t.is(report.cli.code, 0, `diskseq-open: ${report.cli.stderr}`);
  t.is(report.cli.stdout, report.marker);
  t.is(report.cliPreload.code, 0, `diskseq-open --preload: ${report.cliPreload.stderr}`);
  t.is(report.cliPreload.stdout, report.marker);
  t.true(report.auditUids.length >= 4, `open audit lines: ${JSON.stringify(report.auditUids)}`);
  t.true(report.auditUids.every((uid) => uid === NOBODY.uid), `the daemon saw uid 65534 every time: ${JSON.stringify(report.auditUids)}`);
});

test('a peer that reads the checkout as uid 65534 fails, and the error names the 0700 directory', async (t) => {
  if (!needsRootAndShim(t)) return;
  const { outer, copy } = privateCopy(t);
  const program = join(copy, 'dist', 'test', 'helpers', 'peer-main.js');
  t.regex(whyUnreachable(program, NOBODY) ?? '', new RegExp(`^directory ${outer} \\(mode 0700, owner uid 0, group 0\\) does not let uid 65534 through`));
  t.is(whyUnreachable(program, { uid: 0, gid: 0 }), undefined, 'root reaches it');

  // The way peers used to start: node itself, as uid 65534, on the checkout's file.
  const run = await runProcess(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, program, '{}'], { cwd: '/' });
  t.not(run.code, 0);
  const message = describePeerFailure(NOBODY, run);
  t.regex(message, new RegExp(`uid 65534 cannot reach what it needs: directory ${outer} \\(mode 0700`), message);
  t.regex(message, /a peer must not need to read the checkout/);
});
