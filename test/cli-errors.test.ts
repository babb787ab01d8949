// diskseq-open when it must not run COMMAND: a refusal, a missing device or no daemon is
// one clear line on stderr naming the ErrorCode and exit 125 (1 in the forms without
// COMMAND, --list and --watch); a usage error is one line with one pointer to --help and
// exit 125 (1 for --list and --watch); --help and --version, also as -h and -V. Against
// the scripted fake daemon, and (root) the real one.
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

test('a refused open prints one line, exits 125 and does not run COMMAND', async (t) => {
  const daemon = startFakeDaemon(t);
  const marker = join(tempDir(t, 'diskseq-open-test-'), 'ran');
  const cli = runCli(['--socket', daemon.socketPath, '42p3', '--', 'touch', marker]);
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'diskseq 42 has no partition 3' } }));
  t.is(request.request.open?.diskseq?.toString(), '42');
  t.is(request.request.open?.partition, 3);
  const result = await cli;
  t.is(result.code, 125);
  t.is(result.stderr, 'diskseq-open: 42p3: not found (NOT_FOUND): diskseq 42 has no partition 3\n');
  t.false(existsSync(marker));
});

test('DISKSEQD_SOCKET is honoured; a daemon errno is named', async (t) => {
  const daemon = startFakeDaemon(t);
  const cli = runCli(['--exclusive', '/dev/disk/by-diskseq/7', '--', 'true'], { env: { DISKSEQD_SOCKET: daemon.socketPath } });
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_BUSY, message: 'held', osErrno: 16 } }));
  t.true(request.request.open?.exclusive);
  const result = await cli;
  t.is(result.code, 125);
  t.is(result.stderr, 'diskseq-open: /dev/disk/by-diskseq/7: device or resource busy (BUSY, EBUSY): held\n');
});

test('no daemon: one line naming the socket, exit 125; in the forms without COMMAND exit 1', async (t) => {
  const result = await runCli(['--socket', '/nonexistent/d.sock', '1', '--', 'true']);
  t.is(result.code, 125);
  t.regex(result.stderr, /^diskseq-open: 1: cannot connect to diskseqd at \/nonexistent\/d\.sock: [^\n]+\n$/);
  for (const args of [['--list'], ['--watch']]) {
    const query = await runCli(['--socket', '/nonexistent/d.sock', ...args]);
    t.is(query.code, 1, args.join(' '));
    t.regex(query.stderr, /^diskseq-open: cannot connect to diskseqd at \/nonexistent\/d\.sock: [^\n]+\n$/);
  }
});

test('a missing device on the real daemon: one clear line naming NOT_FOUND, exit 125, the command never runs', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const gone = loop.diskseq;
  loop.reattach();
  const { daemon } = await startBroker(t);
  const dir = tempDir(t, 'diskseqd-cli-');
  const witness = join(dir, 'ran');

  const run = await runCli(['--socket', daemon.socketPath, String(gone), '--', 'sh', '-c', `touch ${witness}`]);
  t.is(run.code, 125);
  t.false(existsSync(witness), 'the command was not run');
  const lines = run.stderr.trim().split('\n');
  t.is(lines.length, 1, `one line, got: ${run.stderr}`);
  t.regex(lines[0]!, new RegExp(`^diskseq-open: ${gone}: not found \\(NOT_FOUND\\): `));
  t.is(run.stdout, '');

  // No daemon at all: the same rules.
  const noDaemon = await runCli(['--socket', join(dir, 'absent.sock'), String(loop.diskseq), '--', 'sh', '-c', `touch ${witness}`]);
  t.is(noDaemon.code, 125);
  t.false(existsSync(witness));
  t.is(noDaemon.stderr.trim().split('\n').length, 1, `one line, got: ${noDaemon.stderr}`);
});

test('usage errors exit 125 with one line and one pointer to --help; those of --list and --watch exit 1', async (t) => {
  for (const args of [['42p0', '--', 'true'], ['42', 'true'], ['--fd', '2', '42', '--', 'true'], [], ['--preload', 'x'], ['-q', '42', '--', 'true']]) {
    const result = await runCli(args);
    t.is(result.code, 125, args.join(' '));
    t.regex(result.stderr, /^diskseq-open: [^\n]+ \(see diskseq-open --help\)\n$/);
    t.is(result.stderr.match(/--help/g)?.length, 1, `one pointer to --help: ${result.stderr}`);
  }
  for (const args of [['--list', '--rw'], ['-l', '-o', 'NOPE'], ['--watch', 'x'], ['--list', '--watch']]) {
    const result = await runCli(args);
    t.is(result.code, 1, args.join(' '));
    t.regex(result.stderr, /^diskseq-open: [^\n]+ \(see diskseq-open --help\)\n$/);
  }
});

test('--help and --version, also as -h and -V', async (t) => {
  const help = await runCli(['--help']);
  t.is(help.code, 0);
  for (const option of ['--rw', '--wo', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '--expect', '--fd',
    '--socket', '--list', '--json', '--bytes', '--output', '--noheadings', '--watch', '--preload', '--help', '--version',
    '-w, --rw', '-x, --exclusive', '-e, --expect', '-l, --list', '-J, --json', '-b, --bytes', '-o, --output', '-n, --noheadings',
    '-h, --help', '-V, --version', 'DISKSEQ_PRELOAD_DEBUG', 'DISKSEQD_SOCKET', 'DISKSEQD_PRELOAD_LIBRARY', '--disable-locks',
    'qemu-img convert', '{3} {4}']) {
    t.true(help.stdout.includes(option), option);
  }
  t.regex(help.stdout, /Exit status:[\s\S]*\n {4}125 [\s\S]*\n {4}126 [\s\S]*\n {4}127 [\s\S]*without COMMAND[\s\S]*\n {4}1 /);
  t.is((await runCli(['-h'])).stdout, help.stdout);
  const version = await runCli(['--version']);
  t.is(version.code, 0);
  t.regex(version.stdout, /^diskseq-open \d+\.\d+\.\d+\n$/);
  t.is((await runCli(['-V'])).stdout, version.stdout);
});
