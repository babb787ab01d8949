// Reopening a delivered fd (docs/design.md, "Reopening and private nodes"): diskseq-open
// hands COMMAND the device as {} = /dev/fd/N, and tools reopen that path. An unprivileged
// peer may reopen only under a grant with "exclusive" (test/exclusive-reopen.test.ts pins
// the refusal without it), and then the reopen gives exactly the granted access — read
// works under a read-only grant, write fails with EACCES and the backing file is
// untouched; under a read-write grant, writes through {} land in the backing file. For
// root the grant is advisory (docs/policy.md): root can reopen read-write what it asked
// read-only. Runs the real CLI as the real users.
import test, { type ExecutionContext } from 'ava';
import { DaemonProcess } from '../testkit/daemon.js';
import { makeMarker, MARKER_BYTES, readFileMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY, type PeerIdentity } from './helpers/peer.js';
import { runCli, type RunResult } from './helpers/cli.js';
import {
  openAudits, policyDir, waitOpenAudits, writePolicy,
} from './helpers/policy-e2e-support.js';

/** A second unprivileged user, granted read-write. */
const WRITER: PeerIdentity = { uid: 4001, gid: 4001 };
/** A third unprivileged user, granted write-only. */
const WRITE_ONLY: PeerIdentity = { uid: 4002, gid: 4002 };
const ROOT: PeerIdentity = { uid: 0, gid: 0 };

/**
 * A loop device, and a daemon whose policy grants it to NOBODY read-only, to WRITER
 * read-write and to WRITE_ONLY write-only, each with "exclusive" (so their fds reopen).
 */
async function setup(t: ExecutionContext) {
  const loop = createLoop({}, t);
  const policy = writePolicy(`${policyDir(t)}/policy.json`, {
    rules: [
      { name: 'nobody-reads', peer: { uids: [NOBODY.uid] }, device: { names: [loop.name] }, access: ['read-only'], exclusive: true, loop_devices: true },
      { name: 'writer-writes', peer: { uids: [WRITER.uid] }, device: { names: [loop.name] }, access: ['read-only', 'read-write'], exclusive: true, loop_devices: true },
      { name: 'write-only', peer: { uids: [WRITE_ONLY.uid] }, device: { names: [loop.name] }, access: ['write-only'], exclusive: true, loop_devices: true },
    ],
  });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy }, t);
  /** Runs `diskseq-open [options] DISKSEQ -- sh -c SCRIPT` as `who`, socket from DISKSEQD_SOCKET. */
  const diskseqOpen = (who: PeerIdentity, options: string[], script: string): Promise<RunResult> =>
    runCli([...options, loop.diskseq.toString(), '--', 'sh', '-c', script], { as: who, env: { DISKSEQD_SOCKET: daemon.socketPath } });
  return { loop, daemon, diskseqOpen };
}

/** The shell command's failure text for a reopen of {} that the kernel refused with EACCES. */
const PERMISSION_DENIED = /\/dev\/fd\/3: Permission denied/;

test('reopen: a peer granted read-only reads through {}, and reopening {} for writing fails with EACCES', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, daemon, diskseqOpen } = await setup(t);
  const marker = loop.image.diskMarker;

  const from = openAudits(daemon).length;
  const read = await diskseqOpen(NOBODY, [], 'head -c 16 {}');
  t.is(read.code, 0, `diskseq-open as nobody: ${read.stderr}`);
  t.is(read.stdout, marker.slice(0, 16), 'head read the disk marker through the reopened {}');
  const [audit] = await waitOpenAudits(daemon, from, 1);
  t.like(audit, { rule: 'nobody-reads', decision: 'allow', code: 'OK', peer: { uid: NOBODY.uid } });

  // Read-write and write-only reopens of the same {} are refused by the kernel.
  const rw = await diskseqOpen(NOBODY, [], 'exec 9<>{}');
  t.not(rw.code, 0, 'sh exits non-zero when the read-write reopen fails');
  t.regex(rw.stderr, PERMISSION_DENIED, `read-write reopen: ${rw.stderr}`);
  const overwrite = makeMarker('X');
  const wo = await diskseqOpen(NOBODY, [], `printf %s '${overwrite}' > {}`);
  t.not(wo.code, 0, 'sh exits non-zero when the write-only reopen fails');
  t.regex(wo.stderr, PERMISSION_DENIED, `write-only reopen: ${wo.stderr}`);
  // The daemon did deliver the read-only fd for both (the refusal came from the reopen).
  const audits = await waitOpenAudits(daemon, from + 1, 2);
  t.true(audits.every((a) => a.decision === 'allow' && a.rule === 'nobody-reads'), JSON.stringify(audits));

  t.is(readFileMarker(loop.image.path, 0), marker, 'the backing file is unchanged');
  // Control for the check above: the marker reads back through a fresh open of the device.
  const check = await diskseqOpen(NOBODY, [], `head -c ${MARKER_BYTES} {}`);
  t.is(check.stdout, marker);
});

test('reopen: a peer granted read-write writes through {}, and the bytes land in the backing file', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, diskseqOpen } = await setup(t);
  const before = loop.image.diskMarker;
  const written = makeMarker('W');
  t.not(written, before);

  // dd reopens {} (O_WRONLY, no truncation) and fsyncs, so the bytes reach the loop's
  // backing file although the fixture still holds the device open.
  const write = await diskseqOpen(WRITER, ['--rw'], `printf %s '${written}' | dd of={} conv=notrunc,fsync status=none`);
  t.is(write.code, 0, `diskseq-open --rw as uid ${WRITER.uid}: ${write.stderr}`);
  t.is(readFileMarker(loop.image.path, 0), written, 'the write reached the backing file');

  // And read back through a reopen of {} under the same grant.
  const readBack = await diskseqOpen(WRITER, ['--rw'], `head -c ${MARKER_BYTES} {}`);
  t.is(readBack.stdout, written);

  // The read-only grant of the other peer still does not let it write.
  const refused = await diskseqOpen(NOBODY, [], `printf %s '${before}' | dd of={} conv=notrunc,fsync status=none`);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /Permission denied/, refused.stderr);
  t.is(readFileMarker(loop.image.path, 0), written, 'the refused write changed nothing');
});

test('reopen: a peer granted write-only writes through {}, and reopening {} for reading fails with EACCES', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, diskseqOpen } = await setup(t);
  const written = makeMarker('O');

  const read = await diskseqOpen(WRITE_ONLY, ['--wo'], 'head -c 16 {}');
  t.not(read.code, 0, 'head fails to reopen {} for reading');
  t.regex(read.stderr, /Permission denied/, read.stderr);
  t.is(read.stdout, '', 'nothing was read');

  const write = await diskseqOpen(WRITE_ONLY, ['--wo'], `printf %s '${written}' | dd of={} conv=notrunc,fsync status=none`);
  t.is(write.code, 0, write.stderr);
  t.is(readFileMarker(loop.image.path, 0), written, 'the write reached the backing file');
});

test('reopen: for root the grant is advisory — root reopens read-write what it asked read-only (documented)', async (t) => {
  if (!needsRoot(t)) return;
  const { loop, daemon, diskseqOpen } = await setup(t);
  const written = makeMarker('R');

  const from = openAudits(daemon).length;
  const write = await diskseqOpen(ROOT, [], `printf %s '${written}' | dd of={} conv=notrunc,fsync status=none`);
  t.is(write.code, 0, `root's read-write reopen of a read-only delivery: ${write.stderr}`);
  const [audit] = await waitOpenAudits(daemon, from, 1);
  t.like(audit, { rule: 'root', decision: 'allow', code: 'OK', request: { access: 'read-only' } }, JSON.stringify(audit));
  t.is(readFileMarker(loop.image.path, 0), written, 'root wrote through a read-only grant');
});
