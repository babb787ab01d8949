// diskseq-open DEVICE... -- COMMAND: it opens each DEVICE through the daemon and runs
// COMMAND with the fd at N (default 3, then 4, ...), {} in an ARG becoming /dev/fd/N of the
// first and {N} that of DEVICE N; every DEVICE form; COMMAND's exit status is passed
// through (128+signo for a signal, 127 for a missing COMMAND) and SIGTERM is forwarded to
// it. Several DEVICEs: all are verified before COMMAND starts; one refused is named alone,
// aborts the others' opens, closes every fd received, and COMMAND does not run (exit 125).
// Against the real daemon, and against the scripted fake one serving real loop devices of
// the test's own.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import anyTest from 'ava';
import { main } from '../client/cli.js';
import { ErrorCode } from '../proto/contract.js';
import { tempDir } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { fdCount } from '../testkit/proc.js';
import { cliArgv } from '../testkit/repo.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { claimTestLoop, loopWireDevice, openLoopFd, serveLoop, startFakeDaemon } from './helpers/fake-daemon.js';

const test = anyTest.serial;

test('diskseq-open <X>p1 -- sh -c "head -c 16 {}" prints partition 1\'s marker', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const { daemon } = await startBroker(t);
  const [p1, p2] = loop.image.partitions;

  const run = await runCli(['--socket', daemon.socketPath, `${loop.diskseq}p1`, '--', 'sh', '-c', 'head -c 16 {}']);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, p1!.marker.slice(0, 16));

  // The other DEVICE forms, each through DISKSEQD_SOCKET.
  const env = { DISKSEQD_SOCKET: daemon.socketPath };
  const forms: [string, string][] = [
    [`${loop.diskseq}-part2`, p2!.marker],
    [`/dev/disk/by-diskseq/${loop.diskseq}-part1`, p1!.marker],
    [`/dev/disk/by-diskseq/${loop.diskseq}`, loop.image.diskMarker],
    [`${loop.diskseq}`, loop.image.diskMarker],
  ];
  for (const [device, marker] of forms) {
    const r = await runCli([device, '--', 'sh', '-c', 'head -c 16 {}'], { env });
    t.is(r.code, 0, `${device}: ${r.stderr}`);
    t.is(r.stdout, marker.slice(0, 16), device);
  }
});

test('diskseq-open --fd N puts the fd at N and the command\'s exit status is passed through', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { daemon } = await startBroker(t);
  const run = await runCli(['--socket', daemon.socketPath, '--fd', '7', String(loop.diskseq), '--', 'sh', '-c', 'head -c 16 <&7; exit 42']);
  t.is(run.code, 42);
  t.is(run.stdout, loop.image.diskMarker.slice(0, 16));
});

test('root: COMMAND gets the device at fd 3, {} becomes /dev/fd/3, exit status passes through', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const loop = claimTestLoop(t);
  const cli = runCli(['--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c', 'head -c 16 {}; exit 7']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.stdout, loop.marker);
  t.is(result.code, 7, result.stderr);
});

test('root: --fd N puts the device at N; a signal-killed COMMAND gives 128+signo', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const loop = claimTestLoop(t);
  const cli = runCli(['--fd', '9', '--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c',
    'head -c 16 /dev/fd/9; [ ! -e /dev/fd/3 ] && kill -TERM $$']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.stdout, loop.marker);
  t.is(result.code, 128 + 15, result.stderr);
});

test('root: a COMMAND that does not exist exits 127 after the open', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const loop = claimTestLoop(t);
  const cli = runCli(['--socket', daemon.socketPath, `${loop.diskseq}`, '--', '/nonexistent/command']);
  await serveLoop(daemon, loop);
  const result = await cli;
  t.is(result.code, 127);
  t.regex(result.stderr, /^diskseq-open: cannot run \/nonexistent\/command: [^\n]+\n$/);
});

test('root: SIGTERM to diskseq-open is forwarded to COMMAND, status 128+15', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const loop = claimTestLoop(t);
  const [node, ...args] = cliArgv('--socket', daemon.socketPath, `${loop.diskseq}`, '--', 'sh', '-c', 'echo ready; exec sleep 20');
  const child = spawn(node!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)));
  await serveLoop(daemon, loop);
  await new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
  child.kill('SIGTERM');
  t.is(await exited, 128 + 15);
});

test('root: two DEVICEs: COMMAND gets each at its fd, {3} and {4} name them, both verified before it starts', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const a = claimTestLoop(t);
  const b = claimTestLoop(t);
  t.not(a.marker, b.marker, 'the two devices are told apart by their markers');
  const cli = runCli(['--socket', daemon.socketPath, `${a.diskseq}`, '--rw', '--exclusive', `${b.diskseq}`, '--',
    'sh', '-c', 'head -c 16 {3}; head -c 16 {4}; head -c 16 <&4; [ "{}" = /dev/fd/3 ]']);
  const [first, second] = await daemon.nextRequests(2);
  t.deepEqual([first!.request.open?.diskseq?.toString(), first!.request.open?.access, first!.request.open?.exclusive], [`${a.diskseq}`, 0, false]);
  t.deepEqual([second!.request.open?.diskseq?.toString(), second!.request.open?.access, second!.request.open?.exclusive], [`${b.diskseq}`, 1, true]);
  // Answered out of order: each fd still lands at its DEVICE's number.
  daemon.respond(second!, { opened: { device: loopWireDevice(b) } }, openLoopFd(b));
  daemon.respond(first!, { opened: { device: loopWireDevice(a) } }, openLoopFd(a));
  const result = await cli;
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout, a.marker + b.marker + b.marker);
});

test('root: when one of two DEVICEs is refused, COMMAND does not run, only that DEVICE is named, exit 125', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const a = claimTestLoop(t);
  const marker = join(tempDir(t, 'diskseq-open-test-'), 'ran');
  const cli = runCli(['--socket', daemon.socketPath, `${a.diskseq}`, '--fd', '5', '77p1', '--', 'touch', marker]);
  const [first, second] = await daemon.nextRequests(2);
  daemon.respond(first!, { opened: { device: loopWireDevice(a) } }, openLoopFd(a));
  daemon.respond(second!, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'diskseq 77 is gone' } });
  const result = await cli;
  t.is(result.code, 125);
  t.is(result.stderr, 'diskseq-open: 77p1: not found (NOT_FOUND): diskseq 77 is gone\n');
  t.false(existsSync(marker));
});

test('a refusal aborts the other DEVICEs\' opens: no waiting out their --wait', async (t) => {
  const daemon = startFakeDaemon(t);
  const marker = join(tempDir(t, 'diskseq-open-test-'), 'ran');
  const cli = runCli(['--socket', daemon.socketPath, '--wait', '600', '50', '51', '--', 'touch', marker]);
  const [waiting, refused] = await daemon.nextRequests(2);
  t.is(waiting!.request.open?.waitMs, 600_000);
  daemon.respond(refused!, { error: { code: ErrorCode.ERROR_CODE_PERMISSION_DENIED, message: 'no rule' } });
  // The waiting open is never answered: the CLI gives up on it and closes the connection.
  await waiting!.connection.closed;
  const result = await cli;
  t.is(result.code, 125);
  t.is(result.stderr, 'diskseq-open: 51: permission denied (PERMISSION_DENIED): no rule\n');
  t.false(existsSync(marker));
});

test('root: in process, a failed multi-DEVICE open closes every fd it received', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = startFakeDaemon(t);
  const loops = [claimTestLoop(t), claimTestLoop(t)];
  const before = fdCount(process.pid);
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
  t.is(fdCount(process.pid), before, 'both delivered fds and the connection are closed');
});
