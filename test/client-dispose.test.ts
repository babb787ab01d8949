// Opened, Client and DeviceWatch are disposable: `using` / `await using` (compiled here by
// TypeScript, since Node 20's V8 lacks the syntax) close them on leaving the block, also
// when it throws, and an explicit close() does the same and is idempotent — counted in
// this process's open fds. Against the scripted fake daemon; the fds are real loop devices.
import anyTest from 'ava';
import { Client, connect, DeviceWatch, Opened } from '../client/index.js';
import { fdCount } from '../testkit/proc.js';
import { needsRoot } from './helpers/ci.js';
import { claimTestLoop, FakeDaemon, loopWireDevice } from './helpers/fake-daemon.js';
import { closeSync, openSync } from 'node:fs';

// Serial: the tests count this process's open fds.
const test = anyTest.serial;

function fakeDaemon(t: import('ava').ExecutionContext): FakeDaemon {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  return daemon;
}

/** A hello round trip: the fake daemon's end of the connection exists before a test counts fds. */
async function roundTrip(daemon: FakeDaemon, client: Client): Promise<void> {
  const hello = client.hello();
  daemon.respond(await daemon.nextRequest(), { hello: { protocolVersion: 1 } });
  await hello;
}

/** Opens `loop` through the client, the fake daemon answering with a real fd of it. */
async function openLoop(daemon: FakeDaemon, client: Client, loop: ReturnType<typeof claimTestLoop>): Promise<Opened> {
  const opened = client.open({ diskseq: loop.diskseq });
  daemon.respond(await daemon.nextRequest(), { opened: { device: loopWireDevice(loop) } }, openSync(loop.path, 'r'));
  return opened;
}

test('this Node has Symbol.dispose and Symbol.asyncDispose, and the three classes answer to them', (t) => {
  t.is(typeof Symbol.dispose, 'symbol');
  t.is(typeof Symbol.asyncDispose, 'symbol');
  for (const proto of [Opened.prototype, Client.prototype, DeviceWatch.prototype]) {
    t.is(typeof proto[Symbol.dispose], 'function');
    t.is(typeof proto[Symbol.asyncDispose], 'function');
    t.false(Object.hasOwn(proto, 'undefined'), 'no method keyed "undefined"');
  }
});

test('root: `using` closes the Opened fd at the end of the block, also when the block throws', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = fakeDaemon(t);
  const loop = claimTestLoop(t);
  await using client = await connect({ socketPath: daemon.socketPath });
  await roundTrip(daemon, client);
  const before = fdCount(process.pid);
  let kept: Opened | undefined;
  {
    using opened = await openLoop(daemon, client, loop);
    kept = opened;
    t.is(fdCount(process.pid), before + 1, 'the fd is open inside the block');
    t.false(opened.isClosed);
  }
  t.true(kept.isClosed);
  t.is(fdCount(process.pid), before, 'using closed it');

  await t.throwsAsync(async () => {
    await using opened = await openLoop(daemon, client, loop);
    kept = opened;
    throw new Error('the block failed');
  }, { message: 'the block failed' });
  t.true(kept.isClosed);
  t.is(fdCount(process.pid), before, 'await using closed it on the throw');
});

test('root: Opened.close() closes once; closeAsync() off the loop; both idempotent', async (t) => {
  if (!needsRoot(t)) return;
  const daemon = fakeDaemon(t);
  const loop = claimTestLoop(t);
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  await roundTrip(daemon, client);
  const before = fdCount(process.pid);
  const opened = await openLoop(daemon, client, loop);
  // Destructuring, as callers of the OpenResult shape do, still works.
  const { fd, device } = opened;
  t.is(device.diskseq, loop.diskseq);
  t.is(fdCount(process.pid), before + 1);
  opened.close();
  opened.close();
  t.is(fdCount(process.pid), before);
  // A new fd may now take the same number: a second close must not touch it.
  const other = openSync('/dev/null', 'r');
  try {
    opened.close();
    opened[Symbol.dispose]();
    t.is(fdCount(process.pid), before + 1, `fd ${other} (maybe the old number ${fd}) is still open`);
  } finally {
    closeSync(other);
  }
  const second = await openLoop(daemon, client, loop);
  await second.closeAsync();
  await second[Symbol.asyncDispose]();
  t.true(second.isClosed);
  t.is(fdCount(process.pid), before);
});

test('`await using` a client closes its connection and its watches', async (t) => {
  const daemon = fakeDaemon(t);
  let kept: Client | undefined;
  const watchClosed: Promise<void>[] = [];
  {
    await using client = await connect({ socketPath: daemon.socketPath });
    kept = client;
    const watch = client.watch();
    const request = await daemon.nextRequest();
    t.truthy(request.request.watch);
    watchClosed.push(request.connection.closed);
    t.false(watch[Symbol.dispose] === undefined);
  }
  t.true(kept.isClosed);
  await watchClosed[0];
  t.pass('the watch connection closed too');
});

test('`using` a watch ends it and closes its connection', async (t) => {
  const daemon = fakeDaemon(t);
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  let closed: Promise<void> | undefined;
  {
    using watch = client.watch();
    closed = (await daemon.nextRequest()).connection.closed;
    void watch;
  }
  await closed;
  t.false(client.isClosed, 'the client itself stays open');
});
