/** Poller: uv_poll readiness on this environment's loop, close(), teardown and exceptions. */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  native, POLL_READABLE, POLL_WRITABLE, type NativeError, type Poller,
} from '../native/index.js';
import { tempDir } from '../testkit/cleanup.js';

const addonPath = fileURLToPath(new URL('../../build/Release/diskseqd.node', import.meta.url));

/** A connected pair through a real listener; fds closed in teardown (after pollers). */
function pair(t: ExecutionContext): { client: number; server: number } {
  const path = join(tempDir(t), 'sock');
  const listener = native.listenSeqpacket(path, 1);
  const client = native.connectSeqpacket(path, true);
  const server = native.accept(listener)!;
  native.close(listener);
  t.teardown(() => {
    native.close(client);
    native.close(server);
  });
  return { client, server };
}

/** Resolves with the first callback's (status, events). */
function nextEvent(fd: number, events: number, t: ExecutionContext): Promise<[number, number]> {
  return new Promise((resolve) => {
    const poller: Poller = new native.Poller(fd, (status, ready) => {
      poller.close();
      resolve([status, ready]);
    });
    t.teardown(() => poller.close());
    poller.start(events);
  });
}

test('a Poller reports readable once a packet arrives', async (t) => {
  const { client, server } = pair(t);
  const event = nextEvent(server, POLL_READABLE, t);
  t.true(native.send(client, Buffer.from('ping'), -1));
  const [status, ready] = await event;
  t.is(status, 0);
  t.is(ready & POLL_READABLE, POLL_READABLE);
  t.like(native.recv(server, Buffer.alloc(8)), { bytes: 4 });
});

test('a Poller reports writable on a fresh socket', async (t) => {
  const { client } = pair(t);
  const [status, ready] = await nextEvent(client, POLL_WRITABLE, t);
  t.is(status, 0);
  t.is(ready & POLL_WRITABLE, POLL_WRITABLE);
});

test('close() is idempotent and start() after close() throws EBADF', (t) => {
  const { server } = pair(t);
  const poller = new native.Poller(server, () => t.fail('closed poller fired'));
  poller.start(POLL_READABLE);
  poller.stop();
  poller.start(POLL_READABLE);
  poller.close();
  poller.close();
  poller.stop(); // harmless after close
  const error = t.throws<NativeError>(() => poller.start(POLL_READABLE));
  t.is(error?.code, 'EBADF');
});

test('a stopped Poller does not fire', async (t) => {
  const { client, server } = pair(t);
  let fired = 0;
  const poller = new native.Poller(server, () => fired++);
  t.teardown(() => poller.close());
  poller.start(POLL_READABLE);
  poller.stop();
  native.send(client, Buffer.from('x'), -1);
  // A second poller on another fd proves the loop went round with data pending.
  await nextEvent(client, POLL_WRITABLE, t);
  await new Promise((resolve) => setImmediate(resolve));
  t.is(fired, 0);
});

test('bad Poller arguments throw', (t) => {
  t.throws(() => new native.Poller(-1, () => {}), { instanceOf: TypeError });
  t.throws(() => new (native.Poller as unknown as new (fd: number, cb: unknown) => Poller)(0, 'no'), {
    instanceOf: TypeError,
  });
});

/** Runs a CommonJS script in a fresh node with the addon path in ADDON. */
function runNode(script: string, flags: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...flags, '-e', script], {
    env: { ...process.env, ADDON: addonPath },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const childPair = `
const n = require(process.env.ADDON);
const path = require('fs').mkdtempSync('/tmp/diskseqd-native-child-') + '/sock';
const listener = n.listenSeqpacket(path, 1);
const client = n.connectSeqpacket(path, true);
const server = n.accept(listener);
require('fs').rmSync(require('path').dirname(path), { recursive: true });
`;

test('an exception thrown by the callback becomes an uncaughtException, not a crash', (t) => {
  const result = runNode(`${childPair}
process.on('uncaughtException', (error) => {
  console.log('caught:' + error.message);
  poller.close();
});
const poller = new n.Poller(client, () => { throw new Error('from callback'); });
poller.start(2);
`);
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout.trim(), 'caught:from callback');
});

test('an open Poller does not block the exit of a worker thread (env cleanup hook)', (t) => {
  const result = runNode(`
const { Worker } = require('worker_threads');
const worker = new Worker(\`${childPair.replace(/`/g, '\\`')}
const poller = new n.Poller(server, () => {});
poller.start(1);
require('worker_threads').parentPort.postMessage('polling');
\`, { eval: true, env: process.env });
worker.on('message', async () => {
  await worker.terminate();
  console.log('terminated');
});
`);
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout.trim(), 'terminated');
});

test('a collected, never-closed Poller is closed by its finalizer', (t) => {
  const result = runNode(`${childPair}
(function () { const p = new n.Poller(server, () => {}); p.start(1); p.stop(); })();
setTimeout(() => { global.gc(); setTimeout(() => console.log('ok'), 10); }, 10);
`, ['--expose-gc']);
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout.trim(), 'ok');
});
