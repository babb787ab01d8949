// diskseq-open as a process, against the scripted fake daemon: one clear line and exit 1
// on a refusal without running COMMAND, usage errors exit 2, --list --json is valid JSON,
// and (root, with a real loop device) the fd at N, {} substitution and exit statuses.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import anyTest, { type ExecutionContext } from 'ava';
import { ErrorCode, EventKind } from '../proto/contract.js';
import { claimTestLoop, FakeDaemon, loopWireDevice, wireDevice, type FakeRequest } from './helpers/fake-daemon.js';
import { needsRoot } from './helpers/ci.js';

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

test('a refused open prints one line, exits 1 and does not run COMMAND', async (t) => {
  const { daemon, dir } = setup(t);
  const marker = join(dir, 'ran');
  const cli = run(['--socket', daemon.socketPath, '42p3', '--', 'touch', marker]);
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'diskseq 42 has no partition 3' } }));
  t.is(request.request.open?.diskseq?.toString(), '42');
  t.is(request.request.open?.partition, 3);
  const result = await cli;
  t.is(result.status, 1);
  t.is(result.stderr, 'diskseq-open: 42p3: not found (NOT_FOUND): diskseq 42 has no partition 3\n');
  t.false(existsSync(marker));
});

test('DISKSEQD_SOCKET is honoured; a daemon errno is named', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--exclusive', '/dev/disk/by-diskseq/7', '--', 'true'], { ...process.env, DISKSEQD_SOCKET: daemon.socketPath });
  const request = await serveOne(daemon, (r) => daemon.respond(r, { error: { code: ErrorCode.ERROR_CODE_BUSY, message: 'held', osErrno: 16 } }));
  t.true(request.request.open?.exclusive);
  const result = await cli;
  t.is(result.status, 1);
  t.is(result.stderr, 'diskseq-open: /dev/disk/by-diskseq/7: device or resource busy (BUSY, EBUSY): held\n');
});

test('no daemon: one line naming the socket, exit 1', async (t) => {
  const result = await run(['--socket', '/nonexistent/d.sock', '1', '--', 'true']);
  t.is(result.status, 1);
  t.regex(result.stderr, /^diskseq-open: 1: cannot connect to diskseqd at \/nonexistent\/d\.sock: [^\n]+\n$/);
});

test('usage errors exit 2 with one line', async (t) => {
  for (const args of [['42p0', '--', 'true'], ['42', 'true'], ['--fd', '2', '42', '--', 'true'], []]) {
    const result = await run(args);
    t.is(result.status, 2, args.join(' '));
    t.regex(result.stderr, /^diskseq-open: [^\n]+ \(see diskseq-open --help\)\n$/);
  }
});

test('--help and --version', async (t) => {
  const help = await run(['--help']);
  t.is(help.status, 0);
  for (const option of ['--rw', '--wo', '--exclusive', '--direct', '--sync', '--dsync', '--wait', '--expect', '--fd',
    '--socket', '--list', '--json', '--watch', '--preload', '--help', '--version', 'Exit status']) {
    t.true(help.stdout.includes(option), option);
  }
  const version = await run(['--version']);
  t.is(version.status, 0);
  t.regex(version.stdout, /^diskseq-open \d+\.\d+\.\d+\n$/);
});

test('--list --json prints the joined multi-packet list as valid JSON, partitions included', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--list', '--json', '--socket', daemon.socketPath]);
  const request = await serveOne(daemon, (r) => {
    daemon.respond(r, { devices: { devices: [wireDevice(18446744073709551615n)], more: true } });
    daemon.respond(r, { devices: { devices: [wireDevice(3n, 1, { attributes: { partition: '1' } }), wireDevice(3n)] } });
  });
  t.true(request.request.list?.includePartitions);
  const result = await cli;
  t.is(result.status, 0, result.stderr);
  const devices = JSON.parse(result.stdout) as Array<{ diskseq: string; partition: number; attributes: object }>;
  t.deepEqual(devices.map((d) => [d.diskseq, d.partition]), [['3', 0], ['3', 1], ['18446744073709551615', 0]]);
  t.deepEqual(devices[1]!.attributes, { partition: '1' });
});

test('--list prints a table', async (t) => {
  const { daemon } = setup(t);
  const cli = run(['--list', '--socket', daemon.socketPath]);
  await serveOne(daemon, (r) => daemon.respond(r, { devices: { devices: [wireDevice(3n, 2, { name: 'loop9p2', major: 259, minor: 4 })] } }));
  const result = await cli;
  t.is(result.status, 0, result.stderr);
  const lines = result.stdout.trimEnd().split('\n');
  t.regex(lines[0]!, /^DEVICE\s+NAME\s+MAJ:MIN\s+SIZE\s+RO\s+RM\s+DRIVER$/);
  t.regex(lines[1]!, /^3p2\s+loop9p2\s+259:4\s+1048576\s+0\s+0\s+loop$/);
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
  if (!needsRoot(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t);
  const cli = run(['--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c', 'head -c 16 {}; exit 7']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.stdout, loop.marker);
  t.is(result.status, 7, result.stderr);
});

test('root: --fd N puts the device at N; a signal-killed COMMAND gives 128+signo', async (t) => {
  if (!needsRoot(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t);
  const cli = run(['--fd', '9', '--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c',
    'head -c 16 /dev/fd/9; [ ! -e /dev/fd/3 ] && kill -TERM $$']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.stdout, loop.marker);
  t.is(result.status, 128 + 15, result.stderr);
});

test('root: a COMMAND that does not exist exits 127 after the open', async (t) => {
  if (!needsRoot(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t);
  const cli = run(['--socket', daemon.socketPath, `${loop.diskseq}`, '--', '/nonexistent/command']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.status, 127);
  t.regex(result.stderr, /^diskseq-open: cannot run \/nonexistent\/command: [^\n]+\n$/);
});

test('root: SIGTERM to diskseq-open is forwarded to COMMAND, status 128+15', async (t) => {
  if (!needsRoot(t)) return;
  const { daemon } = setup(t);
  const loop = claimTestLoop(t);
  const child = spawn(process.execPath, [CLI, '--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c',
    'echo ready; exec sleep 20'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)));
  await serveLoop(daemon, loop);
  await new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
  child.kill('SIGTERM');
  t.is(await exited, 128 + 15);
});
