// diskseq-open when it must not run COMMAND: a refusal, a missing device or no daemon is
// one clear line on stderr and exit 1; a usage error is one line and exit 2; --help and
// --version. Against the scripted fake daemon, and (root) the real one.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import anyTest from 'ava';
import { ErrorCode } from '../proto/contract.js';
import { tempDir } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { runCli } from './helpers/cli.js';
import { serveOne, startFakeDaemon } from './helpers/fake-daemon.js';

const test = anyTest.serial;

test('a refused open prints one line, exits 1 and does not run COMMAND', async (t) => {
  const daemon = startFakeDaemon(t);
  const marker = join(tempDir(t, 'diskseq-open-test-'), 'ran');
  const cli = runCli(['--socket', daemon.socketPath, '42p3', '--', 'touch', marker]);
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'diskseq 42 has no partition 3' } }));
  t.is(request.request.open?.diskseq?.toString(), '42');
  t.is(request.request.open?.partition, 3);
  const result = await cli;
  t.is(result.code, 1);
  t.is(result.stderr, 'diskseq-open: 42p3: not found (NOT_FOUND): diskseq 42 has no partition 3\n');
  t.false(existsSync(marker));
});

test('DISKSEQD_SOCKET is honoured; a daemon errno is named', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--exclusive', '/dev/disk/by-diskseq/7', '--', 'true'], { env: { DISKSEQD_SOCKET: daemon.socketPath } });
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_BUSY, message: 'held', osErrno: 16 } }));
  t.true(request.request.open?.exclusive);
  const result = await cli;
  t.is(result.code, 1);
  t.is(result.stderr, 'diskseq-open: /dev/disk/by-diskseq/7: device or resource busy (BUSY, EBUSY): held\n');
});

test('no daemon: one line naming the socket, exit 1', async (t) => {
  const result = await runCli(['--socket', '/nonexistent/d.sock', '1', '--', 'true']);
  t.is(result.code, 1);
  t.regex(result.stderr, /^diskseq-open: 1: cannot connect to diskseqd at \/nonexistent\/d\.sock: [^\n]+\n$/);
});

test('a missing device on the real daemon: one clear line, non-zero exit, the command never runs', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const gone = loop.diskseq;
  loop.reattach();
  const { daemon } = await startBroker(t);
  const dir = tempDir(t, 'diskseqd-cli-');
  const witness = join(dir, 'ran');

  const run = await runCli(['--socket', daemon.socketPath, String(gone), '--', 'sh', '-c', `touch ${witness}`]);
  t.not(run.code, 0);
  t.false(existsSync(witness), 'the command was not run');
  const lines = run.stderr.trim().split('\n');
  t.is(lines.length, 1, `one line, got: ${run.stderr}`);
  t.regex(lines[0]!, /not.found|no such|NOT_FOUND/i);
  t.is(run.stdout, '');

  // No daemon at all: the same rules.
  const noDaemon = await runCli(['--socket', join(dir, 'absent.sock'), String(loop.diskseq), '--', 'sh', '-c', `touch ${witness}`]);
  t.not(noDaemon.code, 0);
  t.false(existsSync(witness));
  t.is(noDaemon.stderr.trim().split('\n').length, 1, `one line, got: ${noDaemon.stderr}`);
});

test('usage errors exit 2 with one line', async (t) => {
  for (const args of [['42p0', '--', 'true'], ['42', 'true'], ['--fd', '2', '42', '--', 'true'], []]) {
    const result = await runCli(args);
    t.is(result.code, 2, args.join(' '));
    t.regex(result.stderr, /^diskseq-open: [^\n]+ \(see diskseq-open --help\)\n$/);
  }
});

test('--help and --version', async (t) => {
  const help = await runCli(['--help']);
  t.is(help.code, 0);
  for (const option of ['--rw', '--wo', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '--expect', '--fd',
    '--socket', '--list', '--json', '--watch', '--preload', '--help', '--version', 'Exit status', 'DISKSEQD_PRELOAD_LIBRARY']) {
    t.true(help.stdout.includes(option), option);
  }
  const version = await runCli(['--version']);
  t.is(version.code, 0);
  t.regex(version.stdout, /^diskseq-open \d+\.\d+\.\d+\n$/);
});
