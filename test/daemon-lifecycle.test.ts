// The daemon as a program: its command line, and a clean stop on SIGTERM/SIGINT that
// removes the socket it created and never takes over a socket someone else serves.
import test from 'ava';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { within, tempDir } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { daemonArgv, REPO_ROOT } from '../testkit/repo.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

/** Runs the daemon with `args` to its end, as its users would start it. */
function daemonSync(...args: string[]): SpawnSyncReturns<string> {
  const [node, ...argv] = daemonArgv(...args);
  return spawnSync(node!, argv, { encoding: 'utf8' });
}

test('--help and --version print and exit 0; an unknown option exits non-zero with a hint', (t) => {
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const help = daemonSync('--help');
  t.is(help.status, 0);
  t.regex(help.stdout, /--socket PATH/);
  t.regex(help.stdout, /--log-level/);
  const ver = daemonSync('--version');
  t.is(ver.status, 0);
  t.true(ver.stdout.includes(version), ver.stdout);
  const bad = daemonSync('--no-such-option');
  t.not(bad.status, 0);
  t.regex(bad.stderr, /no-such-option/);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal}: the daemon closes connections, removes its socket and exits 0`, async (t) => {
    if (!needsRoot(t)) return;
    const { daemon, client } = await startBroker(t);
    t.true(existsSync(daemon.socketPath));
    process.kill(daemon.pid, signal);
    const reason = await within(client.whenClosed(), 10_000, 'the daemon closing an idle connection');
    t.not(reason.kind, 'local');
    // Wait without signalling again: a second signal during exit is not what we test.
    const exit = await within(daemon.waitForExit(), 15_000, 'the daemon exiting');
    t.deepEqual(exit, { code: 0, signal: null });
    t.false(existsSync(daemon.socketPath), 'socket removed');
  });
}

test('a socket path another process is serving is not taken over', async (t) => {
  if (!needsRoot(t)) return;
  const dir = tempDir(t, 'diskseqd-busy-');
  const path = join(dir, 'd.sock');
  const listener = native.listenSeqpacket(path, 4);
  t.teardown(() => native.close(listener));

  const error = await t.throwsAsync(DaemonProcess.start({ socketPath: path, readyTimeoutMs: 5000 }, t));
  t.truthy(error);
  // Our listener still owns the path: a client connecting reaches it.
  const probe = native.connectSeqpacket(path, false);
  native.close(probe);
  const accepted = native.accept(listener);
  t.not(accepted, null, 'the connection reached the original listener');
  if (accepted !== null) native.close(accepted);
});

test('a stale socket file nobody serves is replaced', async (t) => {
  if (!needsRoot(t)) return;
  const dir = tempDir(t, 'diskseqd-stale-');
  const path = join(dir, 'd.sock');
  native.close(native.listenSeqpacket(path, 4)); // leaves the file behind, unserved
  t.true(existsSync(path));
  const daemon = await DaemonProcess.start({ socketPath: path }, t);
  t.is(daemon.socketPath, path);
  const fd = native.connectSeqpacket(path, false);
  native.close(fd);
  t.pass();
});
