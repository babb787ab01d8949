// diskseq-open as a process, against the scripted fake daemon: one clear line naming the
// ErrorCode and exit 125 on a refusal without running COMMAND, usage errors exit 125 (1 in
// the forms without COMMAND), --list --json is lsblk-shaped JSON, and (root, with a real
// loop device) the fd at N, {} substitution, several DEVICEs and exit statuses.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext } from 'ava';
import Long from 'long';
import { ErrorCode, EventKind } from '../proto/contract.js';
import { main } from '../client/cli.js';
import { claimTestLoop, FakeDaemon, loopWireDevice, openFdCount, requireLoopDevices, wireDevice, type FakeRequest } from './client-fake-daemon.js';

const test = anyTest.serial;
const CLI = fileURLToPath(new URL('../../bin/diskseq-open.js', import.meta.url));

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs diskseq-open asynchronously (the fake daemon lives in this process's event loop). */
function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

function setup(t: ExecutionContext): { daemon: FakeDaemon; dir: string } {
  const daemon = new FakeDaemon();
  const dir = mkdtempSync(join(tmpdir(), 'diskseq-open-test-'));
  t.teardown(() => {
    daemon.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { daemon, dir };
}

/** Answers the next request with `answer` while the CLI runs. */
async function serveOne(daemon: FakeDaemon, answer: (request: FakeRequest) => void): Promise<FakeRequest> {
  const request = await daemon.nextRequest();
  answer(request);
  return request;
}

test('a refused open prints one line, exits 125 and does not run COMMAND', async (t) => {
  const { daemon, dir } = setup(t);
  const marker = join(dir, 'ran');
  const cli = run(['--socket', daemon.socketPath, '42p3', '--', 'touch', marker]);
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'diskseq 42 has no partition 3' } }));
  t.is(request.request.open?.diskseq?.toString(), '42');
  t.is(request.request.open?.partition, 3);
  const result = await cli;
  t.is(result.status, 125);
  t.is(result.stderr, 'diskseq-open: 42p3: not found (NOT_FOUND): diskseq 42 has no partition 3\n');
  t.false(existsSync(marker));
});

test('DISKSEQD_SOCKET is honoured; a daemon errno is named', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--exclusive', '/dev/disk/by-diskseq/7', '--', 'true'], { ...process.env, DISKSEQD_SOCKET: daemon.socketPath });
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_BUSY, message: 'held', osErrno: 16 } }));
  t.true(request.request.open?.exclusive);
  const result = await cli;
  t.is(result.status, 125);
  t.is(result.stderr, 'diskseq-open: /dev/disk/by-diskseq/7: device or resource busy (BUSY, EBUSY): held\n');
});

test('no daemon: one line naming the socket, exit 125; in the forms without COMMAND exit 1', async (t) => {
  const result = await run(['--socket', '/nonexistent/d.sock', '1', '--', 'true']);
  t.is(result.status, 125);
  t.regex(result.stderr, /^diskseq-open: 1: cannot connect to diskseqd at \/nonexistent\/d\.sock: [^\n]+\n$/);
  for (const args of [['--list'], ['--watch']]) {
    const query = await run(['--socket', '/nonexistent/d.sock', ...args]);
    t.is(query.status, 1, args.join(' '));
    t.regex(query.stderr, /^diskseq-open: cannot connect to diskseqd at \/nonexistent\/d\.sock: [^\n]+\n$/);
  }
});

test('usage errors exit 125 with one line and one pointer to --help; those of --list and --watch exit 1', async (t) => {
  for (const args of [['42p0', '--', 'true'], ['42', 'true'], ['--fd', '2', '42', '--', 'true'], [], ['--preload', 'x'], ['-q', '42', '--', 'true']]) {
    const result = await run(args);
    t.is(result.status, 125, args.join(' '));
    t.regex(result.stderr, /^diskseq-open: [^\n]+ \(see diskseq-open --help\)\n$/);
    t.is(result.stderr.match(/--help/g)?.length, 1, `one pointer to --help: ${result.stderr}`);
  }
  for (const args of [['--list', '--rw'], ['-l', '-o', 'NOPE'], ['--watch', 'x'], ['--list', '--watch']]) {
    const result = await run(args);
    t.is(result.status, 1, args.join(' '));
    t.regex(result.stderr, /^diskseq-open: [^\n]+ \(see diskseq-open --help\)\n$/);
  }
});

test('--help and --version, also as -h and -V', async (t) => {
  const help = await run(['--help']);
  t.is(help.status, 0);
  for (const option of ['--rw', '--wo', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '--expect', '--fd',
    '--socket', '--list', '--json', '--bytes', '--output', '--noheadings', '--watch', '--preload', '--help', '--version',
    '-w, --rw', '-x, --exclusive', '-e, --expect', '-l, --list', '-J, --json', '-b, --bytes', '-o, --output', '-n, --noheadings',
    '-h, --help', '-V, --version', 'DISKSEQ_PRELOAD_DEBUG', 'DISKSEQD_SOCKET', '--disable-locks', 'qemu-img convert', '{3} {4}']) {
    t.true(help.stdout.includes(option), option);
  }
  t.regex(help.stdout, /Exit status:[\s\S]*\n {4}125 [\s\S]*\n {4}126 [\s\S]*\n {4}127 [\s\S]*without COMMAND[\s\S]*\n {4}1 /);
  t.is((await run(['-h'])).stdout, help.stdout);
  const version = await run(['--version']);
  t.is(version.status, 0);
  t.regex(version.stdout, /^diskseq-open \d+\.\d+\.\d+\n$/);
  t.is((await run(['-V'])).stdout, version.stdout);
});

test('--list --json prints the joined multi-packet list in lsblk\'s shape, partitions as children', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--list', '--json', '--socket', daemon.socketPath]);
  const request = await serveOne(daemon, (r) => {
    daemon.respond(r, { devices: { devices: [wireDevice(18446744073709551615n, 0, { name: 'sda', driver: 'sd', major: 8 })], more: true } });
    daemon.respond(r, { devices: { devices: [wireDevice(3n, 1, { name: 'fake3p1', attributes: { partition: '1' } }),
      wireDevice(3n, 0, { attributes: { 'loop/backing_file': '/srv/vm.img' } })] } });
  });
  t.true(request.request.list?.includePartitions);
  const result = await cli;
  t.is(result.status, 0, result.stderr);
  // The diskseq is a JSON number with all its digits, as lsblk writes numbers.
  t.regex(result.stdout, /"diskseq": 18446744073709551615,/);
  const parsed = JSON.parse(result.stdout) as { blockdevices: Array<Record<string, unknown> & { children?: Array<Record<string, unknown>> }> };
  t.deepEqual(Object.keys(parsed), ['blockdevices']);
  t.deepEqual(parsed.blockdevices.map((d) => d['name']), ['fake3', 'sda']);
  t.deepEqual(parsed.blockdevices[0], {
    name: 'fake3', diskseq: 3, partn: null, device: '3', 'maj:min': '7:0', rm: false, size: '1M', ro: false, type: 'loop',
    'back-file': '/srv/vm.img',
    children: [{ name: 'fake3p1', diskseq: 3, partn: 1, device: '3p1', 'maj:min': '7:0', rm: false, size: '1M', ro: false, type: 'part', 'back-file': null }],
  });
  t.like(parsed.blockdevices[1], { name: 'sda', device: '18446744073709551615', type: 'disk', size: '1M' });
  t.false('children' in parsed.blockdevices[1]!);
});

test('--list --json --bytes gives sizes as numbers; -o chooses the keys', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['-lJb', '-o', 'name,size,diskseq', '--socket', daemon.socketPath]);
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [wireDevice(9n, 0, { sizeBytes: Long.fromString('274877906944', true) })] } }));
  const result = await cli;
  t.is(result.status, 0, result.stderr);
  t.deepEqual(JSON.parse(result.stdout), { blockdevices: [{ name: 'fake9', size: 274877906944, diskseq: 9 }] });
});

test('--list prints a table like lsblk: human sizes, partitions drawn under their disk', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--list', '--socket', daemon.socketPath], { ...process.env, LANG: 'C.UTF-8', LC_ALL: '' });
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [
    wireDevice(3n, 2, { name: 'loop9p2', major: 259, minor: 4, sizeBytes: Long.fromString('1572864', true) }),
    wireDevice(3n, 0, { name: 'loop9', major: 7, minor: 9, sizeBytes: Long.fromString('274877906944', true), attributes: { 'loop/backing_file': '/srv/vm.img' } }),
    wireDevice(3n, 1, { name: 'loop9p1', major: 259, minor: 3, readOnly: true }),
  ] } }));
  const result = await cli;
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout, [
    'NAME      DEVICE MAJ:MIN RM SIZE RO TYPE BACK-FILE',
    'loop9     3          7:9  0 256G  0 loop /srv/vm.img',
    '├─loop9p1 3p1      259:3  0   1M  1 part',
    '└─loop9p2 3p2      259:4  0 1.5M  0 part',
    '',
  ].join('\n'));
  // ASCII outside a UTF-8 locale, as lsblk draws it; -n drops the header; -b gives bytes.
  const ascii = run(['-lnb', '-o', 'NAME,SIZE', '--socket', daemon.socketPath], { ...process.env, LANG: 'C', LC_ALL: '' });
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [wireDevice(3n, 0, { name: 'loop9' }), wireDevice(3n, 1, { name: 'loop9p1' })] } }));
  t.is((await ascii).stdout, 'loop9     1048576\n`-loop9p1 1048576\n');
});

test('--watch prints one JSON line per event; UNSUPPORTED ends it with exit 1', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--watch', '--socket', daemon.socketPath]);
  await serveOne(daemon, (r) => {
    daemon.respond(r, { event: { kind: EventKind.EVENT_KIND_ADDED, device: wireDevice(5n) } });
    daemon.respond(r, { event: { kind: EventKind.EVENT_KIND_SYNCED } });
    daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_UNSUPPORTED, message: 'stop' } });
  });
  const result = await cli;
  const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { kind: string; device?: { diskseq: string } });
  t.deepEqual(lines.map((e) => `${e.kind}${e.device ? ` ${e.device.diskseq}` : ''}`), ['added 5', 'synced']);
  t.is(result.status, 1);
  t.regex(result.stderr, /^diskseq-open: not supported by this diskseqd \(UNSUPPORTED\): stop\n$/);
});

test('--preload without the shim built fails clearly, or runs COMMAND with it preloaded', async (t) => {
  const so = fileURLToPath(new URL('../../build/Release/libdiskseq-preload.so', import.meta.url));
  const result = await run(['--preload', '--', 'sh', '-c', 'printf %s "$LD_PRELOAD"'], { ...process.env, LD_PRELOAD: '' });
  if (existsSync(so)) {
    t.is(result.status, 0, result.stderr);
    t.is(result.stdout, so);
  } else {
    t.is(result.status, 1);
    t.regex(result.stderr, /^diskseq-open: the preload library \S+libdiskseq-preload\.so is missing/);
  }
});

/** Serves one Opened with an fd of the test's loop device. */
function serveLoop(daemon: FakeDaemon, loop: ReturnType<typeof claimTestLoop>): Promise<FakeRequest> {
  return serveOne(daemon, (r) => daemon.respond(r, { opened: { device: loopWireDevice(loop) } }, openLoopFd(loop)));
}

function openLoopFd(loop: ReturnType<typeof claimTestLoop>): number {
  // Opened non-exclusively next to the test's O_EXCL claim.
  return openSync(loop.path, 'r');
}

test('root: COMMAND gets the device at fd 3, {} becomes /dev/fd/3, exit status passes through', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t, 'cli-marker-0001');
  const cli = run(['--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c', 'head -c 16 {}; exit 7']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.stdout, loop.marker);
  t.is(result.status, 7, result.stderr);
});

test('root: --fd N puts the device at N; a signal-killed COMMAND gives 128+signo', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t, 'cli-marker-0002');
  const cli = run(['--fd', '9', '--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c',
    'head -c 16 /dev/fd/9; [ ! -e /dev/fd/3 ] && kill -TERM $$']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.stdout, loop.marker);
  t.is(result.status, 128 + 15, result.stderr);
});

test('root: a COMMAND that does not exist exits 127 after the open', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t, 'cli-marker-0003');
  const cli = run(['--socket', daemon.socketPath, `${loop.diskseq}`, '--', '/nonexistent/command']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.status, 127);
  t.regex(result.stderr, /^diskseq-open: cannot run \/nonexistent\/command: [^\n]+\n$/);
});

test('root: SIGTERM to diskseq-open is forwarded to COMMAND, status 128+15', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t, 'cli-marker-0004');
  const child = spawn(process.execPath, [CLI, '--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c',
    'echo ready; exec sleep 20'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)));
  await serveLoop(daemon, loop);
  await new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
  child.kill('SIGTERM');
  t.is(await exited, 128 + 15);
});

test('root: two DEVICEs: COMMAND gets each at its fd, {3} and {4} name them, both verified before it starts', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon } = setup(t);
  const a = claimTestLoop(t, 'cli-multi-a-0001');
  const b = claimTestLoop(t, 'cli-multi-b-0002');
  const cli = run(['--socket', daemon.socketPath, `${a.diskseq}`, '--rw', '--exclusive', `${b.diskseq}`, '--',
    'sh', '-c', 'head -c 16 {3}; head -c 16 {4}; head -c 16 <&4; [ "{}" = /dev/fd/3 ]']);
  const [first, second] = await daemon.nextRequests(2);
  t.deepEqual([first!.request.open?.diskseq?.toString(), first!.request.open?.access, first!.request.open?.exclusive], [`${a.diskseq}`, 0, false]);
  t.deepEqual([second!.request.open?.diskseq?.toString(), second!.request.open?.access, second!.request.open?.exclusive], [`${b.diskseq}`, 1, true]);
  // Answered out of order: each fd still lands at its DEVICE's number.
  daemon.respond(second!, { opened: { device: loopWireDevice(b) } }, openLoopFd(b));
  daemon.respond(first!, { opened: { device: loopWireDevice(a) } }, openLoopFd(a));
  const result = await cli;
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout, a.marker + b.marker + b.marker);
});

test('root: when one of two DEVICEs is refused, COMMAND does not run, only that DEVICE is named, exit 125', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon, dir } = setup(t);
  const a = claimTestLoop(t, 'cli-multi-a-0003');
  const marker = join(dir, 'ran');
  const cli = run(['--socket', daemon.socketPath, `${a.diskseq}`, '--fd', '5', '77p1', '--', 'touch', marker]);
  const [first, second] = await daemon.nextRequests(2);
  daemon.respond(first!, { opened: { device: loopWireDevice(a) } }, openLoopFd(a));
  daemon.respond(second!, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'diskseq 77 is gone' } });
  const result = await cli;
  t.is(result.status, 125);
  t.is(result.stderr, 'diskseq-open: 77p1: not found (NOT_FOUND): diskseq 77 is gone\n');
  t.false(existsSync(marker));
});

test('a refusal aborts the other DEVICEs\' opens: no waiting out their --wait', async (t) => {
  const { daemon, dir } = setup(t);
  const marker = join(dir, 'ran');
  const cli = run(['--socket', daemon.socketPath, '--wait', '600', '50', '51', '--', 'touch', marker]);
  const [waiting, refused] = await daemon.nextRequests(2);
  t.is(waiting!.request.open?.waitMs, 600_000);
  daemon.respond(refused!, { error: { code: ErrorCode.ERROR_CODE_PERMISSION_DENIED, message: 'no rule' } });
  // The waiting open is never answered: the CLI gives up on it and closes the connection.
  await waiting!.connection.closed;
  const result = await cli;
  t.is(result.status, 125);
  t.is(result.stderr, 'diskseq-open: 51: permission denied (PERMISSION_DENIED): no rule\n');
  t.false(existsSync(marker));
});

test('root: in process, a failed multi-DEVICE open closes every fd it received', async (t) => {
  if (!requireLoopDevices(t)) return;
  const { daemon } = setup(t);
  const loops = [claimTestLoop(t, 'cli-multi-a-0004'), claimTestLoop(t, 'cli-multi-b-0005')];
  const before = openFdCount();
  const write = process.stderr.write;
  let stderr = '';
  process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write;
  let status: number;
  try {
    const done = main(['--socket', daemon.socketPath, `${loops[0]!.diskseq}`, `${loops[1]!.diskseq}`, '9', '--', 'true']);
    const requests = await daemon.nextRequests(3);
    requests.slice(0, 2).forEach((request, i) => daemon.respond(request, { opened: { device: loopWireDevice(loops[i]!) } }, openLoopFd(loops[i]!)));
    daemon.respond(requests[2]!, { error: { code: ErrorCode.ERROR_CODE_STALE, message: 'changed' } });
    status = await done;
    // The fake daemon's end of the connection lives in this process too.
    await requests[0]!.connection.closed;
  } finally {
    process.stderr.write = write;
  }
  t.is(status, 125);
  t.is(stderr, 'diskseq-open: 9: stale (the device changed while it was being opened) (STALE): changed\n');
  t.is(openFdCount(), before, 'both delivered fds and the connection are closed');
});
