/**
 * The real daemon (bin/diskseqd.cjs) as systemd runs it: socket-activated, talking to a
 * NOTIFY_SOCKET, exiting when idle. Every daemon is a child process on a private socket,
 * killed in teardown if a test leaves it running.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import {
  closeSync, existsSync, lstatSync, openSync, readFileSync, readSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Long from 'long';
import { native } from '../native/index.js';
import { WireClient } from '../testkit/wire-client.js';
import { readMarker } from '../testkit/image.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop, sysfsDiskseq } from '../testkit/loop.js';
import { fdFlags } from '../testkit/proc.js';
import { daemonArgv, REPO_ROOT } from '../testkit/repo.js';
import { tempDir, within } from '../testkit/cleanup.js';
import { attachLoop, claimLoop, makeImage } from './helpers/native-fixtures.js';
import {
  NotifyReceiver, spawnActivated, spawnTracked, type RunningChild,
} from './helpers/systemd.js';
import { needsTool, needsRoot } from './helpers/ci.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const EXIT_WAIT_MS = 30_000;

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'WATCHDOG_PID', 'WATCHDOG_USEC', 'NOTIFY_SOCKET']) delete env[key];
  return { ...env, ...extra };
}

/** The daemon, started the way systemd starts it from the unit but not socket-activated, by `tool` (or directly). */
function spawnDaemon(t: ExecutionContext, before: string[], args: string[], env: NodeJS.ProcessEnv): RunningChild {
  const [command, ...rest] = [...before, ...daemonArgv(...args)];
  return spawnTracked(t, command!, rest, env);
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('under systemd-socket-activate --seqpacket it serves a verified open and never unlinks the socket', async (t) => {
  if (!needsRoot(t)) return;
  const tool = needsTool(t, 'systemd-socket-activate');
  if (tool === undefined) return;
  const image = makeImage(t, 1 << 20, 0xa7);
  const loop = claimLoop(t);
  attachLoop(loop, image.fd);
  const diskseq = sysfsDiskseq(loop.name);

  const socketPath = join(tempDir(t), 'activated.sock');
  const run = spawnDaemon(t, [tool, '--seqpacket', '-l', socketPath], ['--idle-exit', '600'], cleanEnv());
  await waitUntil(() => run.stderr().includes('Listening on'), 'systemd-socket-activate to listen');
  // The first connection makes systemd-socket-activate exec the daemon, which must accept it.
  const client = WireClient.connect(socketPath);
  t.teardown(() => client.close());
  const { response, fds } = await client.request({
    open: { diskseq: Long.fromString(diskseq.toString(), true), partition: 0 },
  });
  t.teardown(() => { for (const fd of fds) native.close(fd); });
  t.truthy(response.opened, JSON.stringify(response.toJSON()));
  t.is(fds.length, 1);
  t.is(native.probeFdSync(fds[0]).diskseq, diskseq);
  const first = Buffer.alloc(1);
  readSync(fds[0], first, 0, 1, 0);
  t.is(first[0], 0xa7);
  t.regex(run.stdout(), /"socket":"([^"]+)","inherited":true.*"msg":"serving"/);
  t.is(/"socket":"([^"]+)","inherited":true/.exec(run.stdout())?.[1], socketPath, 'logs where systemd bound it');

  // systemd-socket-activate execs in place: the child's pid is the daemon's.
  const flags = fdFlags(3, run.child.pid!);
  t.truthy(flags & O_NONBLOCK, 'inherited listener set non-blocking');
  t.truthy(flags & O_CLOEXEC, 'inherited listener set close-on-exec');

  client.close();
  run.child.kill('SIGTERM');
  const result = await within(run.exited, EXIT_WAIT_MS, 'daemon exit after SIGTERM');
  t.is(result.code, 0, result.stderr);
  t.true(lstatSync(socketPath).isSocket(), 'the socket belongs to whoever bound it (systemd), not to the daemon');
});

test('a stream socket alone from systemd: the daemon exits non-zero, saying what is wrong', async (t) => {
  const tool = needsTool(t, 'systemd-socket-activate');
  if (tool === undefined) return;
  const socketPath = join(tempDir(t), 'stream.sock');
  const run = spawnDaemon(t, [tool, '-l', socketPath], [], cleanEnv());
  await waitUntil(() => run.stderr().includes('Listening on'), 'systemd-socket-activate to listen');
  const { createConnection } = await import('node:net');
  const poke = createConnection(socketPath);
  poke.on('error', () => undefined);
  t.teardown(() => poke.destroy());
  const result = await within(run.exited, EXIT_WAIT_MS, 'daemon exit');
  t.is(result.code, 1);
  t.regex(result.stderr, /systemd passed no SOCK_SEQPACKET socket \(got an AF_UNIX SOCK_STREAM socket, listening\)/);
  t.true(lstatSync(socketPath).isSocket(), 'not unlinked');
});

test('a regular file as fd 3: the daemon exits non-zero, saying what is wrong, and binds nothing', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'x');
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  const socketPath = join(dir, 'must-not-exist.sock');
  const [node, ...argv] = daemonArgv('--socket', socketPath);
  const run = spawnActivated(t, node!, argv, { fd3: fd, env: cleanEnv() });
  const result = await within(run.exited, EXIT_WAIT_MS, 'daemon exit');
  t.is(result.code, 1);
  t.regex(result.stderr, /^diskseqd: socket activation: fd 3 from systemd is not a listening AF_UNIX SOCK_SEQPACKET socket \(got a regular file\)/m);
  t.false(existsSync(socketPath));
});

test('READY=1 only once it serves, then STATUS=, WATCHDOG=1, and STOPPING=1 on SIGTERM', async (t) => {
  if (!needsRoot(t)) return; // a daemon that serves needs root (its private-node directory in /dev)
  const receiver = new NotifyReceiver(t);
  const socketPath = join(tempDir(t), 'd.sock');
  const run = spawnDaemon(t, [], ['--socket', socketPath], cleanEnv({ NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '200000' }));
  const ready = await receiver.waitFor((m) => m.split('\n').includes('READY=1'));
  // Right after READY=1 a client must be served: connect and ask.
  const client = WireClient.connect(socketPath);
  t.teardown(() => client.close());
  t.is(await client.hello(), JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version);
  t.true(receiver.messages.slice(0, ready).every((m) => !m.includes('READY=1')));
  t.regex(receiver.messages[ready], /^READY=1\nSTATUS=\d+ disks, 0 connections, 0 requests served$/);
  // The status follows the connection count (sent when it changes, every 2 s at most).
  await receiver.waitFor((m) => /^STATUS=\d+ disks, 1 connections, \d+ requests served$/.test(m), 10_000, ready + 1);
  await receiver.waitFor((m) => m === 'WATCHDOG=1', 10_000, ready + 1);
  run.child.kill('SIGTERM');
  const stopping = await receiver.waitFor((m) => m.startsWith('STOPPING=1'), 10_000, ready + 1);
  const result = await within(run.exited, EXIT_WAIT_MS, 'daemon exit after SIGTERM');
  t.is(result.code, 0, result.stderr);
  t.deepEqual(receiver.messages.slice(stopping + 1).filter((m) => m === 'WATCHDOG=1'), [], 'no pings after STOPPING=1');
  t.false(existsSync(socketPath), 'a socket the daemon bound itself is removed');
});

test('idle exit: with no clients it exits cleanly after the idle period and removes its socket', async (t) => {
  if (!needsRoot(t)) return; // a daemon that serves needs root (its private-node directory in /dev)
  const receiver = new NotifyReceiver(t);
  const daemon = await DaemonProcess.start({ extraArgs: ['--idle-exit', '0.5'], env: { NOTIFY_SOCKET: receiver.path } }, t);
  const result = await within(daemon.waitForExit(), EXIT_WAIT_MS, 'idle exit');
  t.is(result.code, 0, daemon.stderr);
  t.true(daemon.logs.some((l) => l.msg === 'idle: exiting'), daemon.describe());
  t.true(receiver.messages.some((m) => m.startsWith('STOPPING=1')));
  t.false(existsSync(daemon.socketPath));
});

test('idle exit: an open connection keeps it running until it closes', async (t) => {
  if (!needsRoot(t)) return; // a daemon that serves needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ extraArgs: ['--idle-exit', '0.5'] }, t);
  const holder = WireClient.connect(daemon.socketPath);
  t.teardown(() => holder.close());
  await holder.hello();
  await new Promise((r) => setTimeout(r, 1500)); // three idle periods with a connection open
  t.true(daemon.alive, 'a connected client keeps the daemon');
  t.truthy(await holder.hello());
  holder.close();
  const result = await within(daemon.waitForExit(), EXIT_WAIT_MS, 'idle exit after the last client');
  t.is(result.code, 0, daemon.stderr);
});

test('idle exit: a client that connects as the deadline passes is served, and so are the ones after it', async (t) => {
  if (!needsRoot(t)) return; // a daemon that serves needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ extraArgs: ['--idle-exit', '0.5'] }, t);
  const socketPath = daemon.socketPath;
  // Freeze the daemon, connect (the connection waits in the listen backlog), let the idle
  // deadline pass, thaw it. The daemon then either sees the client first, or its overdue
  // idle timer first and finds the client in the backlog: which one is up to epoll and
  // libuv. Either way the client must be served and the daemon must go on serving. The
  // backlog path alone is tested deterministically in systemd-idle-drain.test.ts.
  process.kill(daemon.pid, 'SIGSTOP');
  let late: WireClient;
  try {
    late = WireClient.connect(socketPath);
    await new Promise((r) => setTimeout(r, 1500));
  } finally {
    process.kill(daemon.pid, 'SIGCONT');
  }
  t.teardown(() => late.close());
  t.truthy(await late.hello());
  t.log(daemon.logs.some((l) => String(l.msg).includes('clients waiting in the backlog')) ? 'deadline first: found the client in the backlog' : 'client first');
  const next = WireClient.connect(socketPath);
  t.teardown(() => next.close());
  t.truthy(await next.hello(), 'a client after that one gets in too');
  t.true(daemon.alive);
  late.close();
  next.close();
  const result = await within(daemon.waitForExit(), EXIT_WAIT_MS, 'idle exit after the last client');
  t.is(result.code, 0, daemon.stderr);
  t.true(daemon.logs.some((l) => l.msg === 'idle: exiting'), daemon.describe());
});

test('idle exit: a request waiting (wait_ms) for a partition keeps the daemon past the idle period and gets its fd', async (t) => {
  if (!needsRoot(t)) return;
  // Partition 1 is in the image's table but not added yet: the open has to wait for it.
  const loop = createLoop({ partscan: true, partitionsMiB: [2], addPartitions: false }, t);
  const daemon = await DaemonProcess.start({ extraArgs: ['--idle-exit', '0.5'] }, t);
  const client = WireClient.connect(daemon.socketPath);
  t.teardown(() => client.close());
  const pending = client.request({
    open: { diskseq: Long.fromString(loop.diskseq.toString(), true), partition: 1, waitMs: 20_000 },
  }, 30_000);
  await new Promise((r) => setTimeout(r, 1500)); // three idle periods while the request waits
  t.true(daemon.alive, 'the waiting request keeps the daemon');
  execFileSync('partx', ['--add', loop.devPath]);
  const { response, fds } = await pending;
  t.teardown(() => { for (const fd of fds) native.close(fd); });
  t.truthy(response.opened, JSON.stringify(response.toJSON()));
  t.is(fds.length, 1);
  t.is(readMarker(fds[0]), loop.image.partitions[0]!.marker);
  client.close();
  const result = await within(daemon.waitForExit(), EXIT_WAIT_MS, 'idle exit after the last client');
  t.is(result.code, 0, daemon.stderr);
});
