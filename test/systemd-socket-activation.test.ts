/**
 * inheritedListeners() in a real child process that inherits fds from 3 on the way systemd
 * hands them over: through systemd-socket-activate (two of them chained for a SEQPACKET and
 * a stream socket: each passes on what it inherited), or through sh with LISTEN_PID set to
 * the pid that sh execs. The child prints what it found (or the error) so the test sees
 * the real fds.
 */
import test, { type ExecutionContext } from 'ava';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { tempDir, within } from '../testkit/cleanup.js';
import { spawnActivated, spawnTracked, type RunningChild } from './helpers/systemd.js';
import { needsTool } from './helpers/ci.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

const probe = `
import { readFileSync } from 'node:fs';
import { inheritedListeners } from ${JSON.stringify(join(REPO_ROOT, 'dist/src/systemd/socket-activation.js'))};
try {
  const found = inheritedListeners();
  const fd = found === null ? null : found.seqpacket;
  const flagsOf = (n) => parseInt(/^flags:\\s*([0-7]+)$/m.exec(readFileSync('/proc/self/fdinfo/' + n, 'utf8'))[1], 8);
  const flags = fd === null ? null : flagsOf(fd);
  const varlink = found?.varlink ?? null;
  const varlinkFlags = varlink === null ? null : flagsOf(varlink);
  const left = Object.keys(process.env).filter((k) => k.startsWith('LISTEN_'));
  console.log(JSON.stringify({ fd, flags, varlink, varlinkFlags, left }));
} catch (error) {
  console.error(error.message);
  process.exit(1);
}`;
const probeArgs = ['--input-type=module', '-e', probe];

interface ProbeResult { fd: number | null; flags: number | null; varlink: number | null; varlinkFlags: number | null; left: string[] }

async function probeOutput(t: ExecutionContext, run: RunningChild): Promise<ProbeResult> {
  const result = await within(run.exited, 30_000, 'probe child');
  t.is(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ProbeResult;
}

/** Runs the probe under systemd-socket-activate and makes the first connection that execs it. */
async function underSocketActivate(t: ExecutionContext, kindArgs: string[]): Promise<RunningChild | undefined> {
  const tool = needsTool(t, 'systemd-socket-activate');
  if (tool === undefined) return undefined;
  const socketPath = join(tempDir(t), 'activate.sock');
  const env = { ...process.env };
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  const run = spawnTracked(t, tool, [...kindArgs, '-l', socketPath, process.execPath, ...probeArgs], env);
  await waitUntil(() => run.stderr().includes('Listening on'), 'systemd-socket-activate to listen');
  // systemd-socket-activate execs the command on the first connection attempt.
  if (kindArgs.includes('--seqpacket')) {
    const fd = native.connectSeqpacket(socketPath, false);
    t.teardown(() => native.close(fd));
  } else {
    await poke(socketPath, kindArgs.includes('--datagram'));
  }
  return run;
}

async function poke(socketPath: string, datagram: boolean): Promise<void> {
  const { createConnection } = await import('node:net');
  if (datagram) {
    const { createRequire } = await import('node:module');
    const dgram = createRequire(import.meta.url)('unix-dgram') as {
      createSocket(type: string): { send(b: Buffer, o: number, l: number, p: string, cb: () => void): void; close(): void };
    };
    const s = dgram.createSocket('unix_dgram');
    s.send(Buffer.from('x'), 0, 1, socketPath, () => undefined);
    s.close();
    return;
  }
  await new Promise<void>((resolve) => {
    const c = createConnection(socketPath, () => { c.destroy(); resolve(); });
    c.on('error', () => resolve());
  });
}

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
}

test('a listening SEQPACKET socket from systemd becomes the listener: fd 3, non-blocking, close-on-exec, LISTEN_* gone', async (t) => {
  const run = await underSocketActivate(t, ['--seqpacket']);
  if (run === undefined) return;
  const out = await probeOutput(t, run);
  t.is(out.fd, 3);
  t.truthy(out.flags! & O_NONBLOCK, 'systemd-socket-activate passes a blocking fd; we must set O_NONBLOCK');
  t.truthy(out.flags! & O_CLOEXEC, 'inherited fds arrive without FD_CLOEXEC; we must set it');
  t.deepEqual(out.left, []);
});

test('a stream socket alone from systemd is refused: the SEQPACKET socket must be there', async (t) => {
  const run = await underSocketActivate(t, []);
  if (run === undefined) return;
  const result = await within(run.exited, 30_000, 'probe child');
  t.is(result.code, 1);
  t.regex(result.stderr, /systemd passed no SOCK_SEQPACKET socket \(got an AF_UNIX SOCK_STREAM socket, listening\)/);
});

/**
 * The probe under two chained systemd-socket-activate: the outer one listens on a SEQPACKET
 * socket (fd 3), the inner one passes that on and adds a stream socket (fd 4), with
 * `fdnames` when given. Connects to the SEQPACKET socket, which makes both exec.
 */
async function underTwoSockets(t: ExecutionContext, fdnames?: string): Promise<RunningChild | undefined> {
  const tool = needsTool(t, 'systemd-socket-activate');
  if (tool === undefined) return undefined;
  const dir = tempDir(t);
  const env = { ...process.env };
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  const names = fdnames === undefined ? [] : [`--fdname=${fdnames}`];
  const run = spawnTracked(t, tool, ['--seqpacket', '-l', join(dir, 'seqpacket.sock'), '--',
    tool, '-l', join(dir, 'varlink.sock'), ...names, '--', process.execPath, ...probeArgs], env);
  await waitUntil(() => run.stderr().includes('Listening on'), 'systemd-socket-activate to listen');
  const fd = native.connectSeqpacket(join(dir, 'seqpacket.sock'), false);
  t.teardown(() => native.close(fd));
  return run;
}

test('two sockets named seqpacket and varlink (LISTEN_FDNAMES): each found, both non-blocking and close-on-exec', async (t) => {
  const run = await underTwoSockets(t, 'seqpacket:varlink');
  if (run === undefined) return;
  const out = await probeOutput(t, run);
  t.is(out.fd, 3);
  t.is(out.varlink, 4);
  t.truthy(out.varlinkFlags! & O_NONBLOCK);
  t.truthy(out.varlinkFlags! & O_CLOEXEC);
  t.deepEqual(out.left, []);
});

test('two sockets without names: told apart by their type', async (t) => {
  const run = await underTwoSockets(t);
  if (run === undefined) return;
  const out = await probeOutput(t, run);
  t.is(out.fd, 3);
  t.is(out.varlink, 4);
});

test('a name that does not fit its socket is refused, naming both', async (t) => {
  // systemd-socket-activate gives every fd the one name it is given.
  const run = await underTwoSockets(t, 'varlink');
  if (run === undefined) return;
  const result = await within(run.exited, 30_000, 'probe child');
  t.is(result.code, 1);
  t.regex(result.stderr, /fd 3 \(named "varlink"\) from systemd is not a listening AF_UNIX SOCK_STREAM socket \(got an AF_UNIX SOCK_SEQPACKET socket, listening\)/);
});

test('a datagram socket from systemd is refused, naming what it got', async (t) => {
  const run = await underSocketActivate(t, ['--datagram']);
  if (run === undefined) return;
  const result = await within(run.exited, 30_000, 'probe child');
  t.is(result.code, 1);
  t.regex(result.stderr, /not a listening AF_UNIX SOCK_SEQPACKET socket \(got an AF_UNIX SOCK_DGRAM socket, not listening\)/);
});

test('a connected, not listening, SEQPACKET socket as fd 3 is refused', async (t) => {
  const dir = tempDir(t);
  const listener = native.listenSeqpacket(join(dir, 'l.sock'), 4);
  t.teardown(() => native.close(listener));
  const connected = native.connectSeqpacket(join(dir, 'l.sock'), false);
  t.teardown(() => native.close(connected));
  const result = await within(spawnActivated(t, process.execPath, probeArgs, { fd3: connected }).exited, 30_000, 'probe');
  t.is(result.code, 1);
  t.regex(result.stderr, /\(got an AF_UNIX SOCK_SEQPACKET socket, not listening\)/);
});

test('a regular file as fd 3 is refused', async (t) => {
  const file = join(tempDir(t), 'not-a-socket');
  writeFileSync(file, 'x');
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  const result = await within(spawnActivated(t, process.execPath, probeArgs, { fd3: fd }).exited, 30_000, 'probe');
  t.is(result.code, 1);
  t.regex(result.stderr, /fd 3 from systemd is not a listening AF_UNIX SOCK_SEQPACKET socket \(got a regular file\)/);
});

test('more than two fds are refused with the count', async (t) => {
  const result = await within(spawnActivated(t, process.execPath, probeArgs, { listenFds: '3' }).exited, 30_000, 'probe');
  t.is(result.code, 1);
  t.regex(result.stderr, /systemd passed 3 fds; diskseqd takes at most two/);
});

test('LISTEN_* meant for another process are ignored and removed', async (t) => {
  const file = join(tempDir(t), 'not-a-socket');
  writeFileSync(file, 'x');
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  // pid 1 is never the child: the variables leaked from an ancestor.
  const run = spawnActivated(t, process.execPath, probeArgs, { fd3: fd, listenPid: '1' });
  const out = await probeOutput(t, run);
  t.is(out.fd, null);
  t.deepEqual(out.left, []);
});

test('without LISTEN_PID and LISTEN_FDS there is no inherited listener', async (t) => {
  const env = { ...process.env };
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  const out = await probeOutput(t, spawnTracked(t, process.execPath, probeArgs, env));
  t.is(out.fd, null);
});
