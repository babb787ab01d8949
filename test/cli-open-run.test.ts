// diskseq-open DEVICE -- COMMAND: it opens DEVICE through the daemon and runs COMMAND with
// the fd at N (default 3), {} in an ARG becoming /dev/fd/N; every DEVICE form; COMMAND's
// exit status is passed through (128+signo for a signal, 127 for a missing COMMAND) and
// SIGTERM is forwarded to it. Against the real daemon, and against the scripted fake one
// serving a real loop device of the test's own.
import { spawn } from 'node:child_process';
import anyTest from 'ava';
import { createLoop } from '../testkit/loop.js';
import { cliArgv } from '../testkit/repo.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { cliEnv, runCli } from './helpers/cli.js';
import { claimTestLoop, serveLoop, startFakeDaemon } from './helpers/fake-daemon.js';

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
