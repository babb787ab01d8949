// DISKSEQ_PRELOAD_DEBUG=1: the shim's line for a refused open names the ErrorCode as
// diskseq-open does (NOT_FOUND, PERMISSION_DENIED), not its number.
import test from 'ava';
import { createTestDisk, run, startShimDaemon } from '../testkit/preload.js';
import { NOBODY } from '../testkit/reachable.js';
import { needsRootAndShim } from './helpers/ci.js';

test('the shim\'s debug line for a refusal names the ErrorCode', async (t) => {
  if (!needsRootAndShim(t)) return;
  const disk = createTestDisk(t);
  const daemon = await startShimDaemon(t);
  const env = { DISKSEQ_PRELOAD_DEBUG: '1' };

  // No policy file: a non-root peer is denied.
  const denied = run('head', ['-c', '1', `/dev/disk/by-diskseq/${disk.diskseq}`], { socket: daemon.socketPath, as: NOBODY, env });
  t.not(denied.status, 0);
  t.regex(denied.stderr, new RegExp(`diskseq-preload\\[\\d+\\]: diskseqd refused ${disk.diskseq} partition 0: PERMISSION_DENIED \\(`), denied.stderr);

  const old = disk.diskseq;
  disk.reattach();
  const gone = run('head', ['-c', '1', `/dev/disk/by-diskseq/${old}p2`], { socket: daemon.socketPath, env });
  t.not(gone.status, 0);
  t.regex(gone.stderr, new RegExp(`diskseq-preload\\[\\d+\\]: diskseqd refused ${old} partition 2: NOT_FOUND \\(`), gone.stderr);
  t.notRegex(denied.stderr + gone.stderr, /refused [^\n]*: code \d/);

  // Without the variable, the shim says nothing of its own.
  const quiet = run('head', ['-c', '1', `/dev/disk/by-diskseq/${old}p2`], { socket: daemon.socketPath });
  t.notRegex(quiet.stderr, /diskseq-preload/);
});
