/**
 * Server.stopAccepting, the server's half of idle exit, made deterministic in-process: a
 * client connects (and waits in the listen backlog, since the event loop has not run the
 * accept yet) and in the same tick the idle deadline asks the server to stop. The client
 * must be admitted and served, never dropped with the listener, and the server must go on
 * listening rather than leave later clients stranded behind a daemon about to exit.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/index.js';
import { createLogger } from '../src/log.js';
import { Opener } from '../src/opener.js';
import { Policy } from '../src/policy/index.js';
import { PrivateNodes } from '../src/private-nodes.js';
import { Registry } from '../src/registry.js';
import { Server, type ServerOptions } from '../src/server.js';
import { Sysfs } from '../src/sysfs.js';
import { WatchHub } from '../src/watch-hub.js';
import { WireClient } from '../testkit/wire-client.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRoot } from './helpers/ci.js';
import { FairTurns } from '../src/fair-turns.js';
import { DEFAULT_QUOTA_LIMITS, Quotas } from '../src/quotas.js';
import { RequestTally } from '../src/request-tally.js';

function makeServer(t: ExecutionContext, options: Partial<ServerOptions> & { socketPath: string }): Server {
  const log = createLogger('silent');
  const sysfs = new Sysfs('/sys');
  const registry = new Registry(sysfs, log);
  const policy = Policy.builtinDefault();
  const privateNodes = new PrivateNodes(join(tempDir(t), 'nodes'));
  const turns = new FairTurns();
  const quotas = new Quotas({ ...DEFAULT_QUOTA_LIMITS, connections: { total: 16, perUid: 16 } });
  const server = new Server(
    { socketMode: 0o600, backlog: 16, ...options },
    {
      opener: new Opener(registry, sysfs, () => policy, privateNodes, log), registry, log, serverVersion: 'test', tally: new RequestTally(),
      watchHub: new WatchHub(registry, turns), turns, quotas,
      limits: { maxInFlight: 4, maxQueuedPackets: 16, maxQueuedBytes: 1 << 20, maxQueuedFds: 4, stallTimeoutMs: 10_000 },
    },
  );
  t.teardown(async () => {
    await server.shutdown(0);
    privateNodes.close();
  });
  return server;
}

/**
 * A second fd for the same socket (what systemd keeps while the daemon holds the other):
 * Node has no dup(2), so the fd takes a round trip through SCM_RIGHTS.
 */
function dup(t: ExecutionContext, fd: number): number {
  const path = join(tempDir(t), 'dup.sock');
  const listener = native.listenSeqpacket(path, 1);
  const sender = native.connectSeqpacket(path, false);
  const receiver = native.accept(listener);
  try {
    if (receiver === null) throw new Error('accept of the dup socket pair found nothing');
    if (!native.send(sender, Buffer.from('fd'), fd)) throw new Error('send of the fd would block');
    const got = native.recv(receiver, Buffer.alloc(16));
    if (got === null || got.fds.length !== 1) throw new Error('the fd did not come back');
    return got.fds[0];
  } finally {
    if (receiver !== null) native.close(receiver);
    native.close(sender);
    native.close(listener);
  }
}

test('a client in the backlog at the deadline is admitted and served, and the server goes on listening', async (t) => {
  if (!needsRoot(t)) return; // PrivateNodes, which every opener needs, wants a root-owned directory
  const socketPath = join(tempDir(t), 'd.sock');
  const server = makeServer(t, { socketPath });
  server.start();
  const client = WireClient.connect(socketPath); // queued: the poller has not run yet
  t.teardown(() => client.close());
  t.false(server.stopAccepting(), 'a waiting client cancels the exit');
  t.is(server.connectionCount, 1, 'the queued client was accepted, not dropped with the listener');
  t.is(await client.hello(), 'test');
  // The path was unlinked before the last accept and bound afresh: new clients get in.
  const next = WireClient.connect(socketPath);
  t.teardown(() => next.close());
  t.is(await next.hello(), 'test');
});

test('with an empty backlog the server stops: the path it bound is gone, nobody is left waiting', async (t) => {
  if (!needsRoot(t)) return;
  const socketPath = join(tempDir(t), 'd.sock');
  const server = makeServer(t, { socketPath });
  server.start();
  t.true(server.stopAccepting());
  t.is(server.connectionCount, 0);
  t.false(existsSync(socketPath));
  t.true(server.stopAccepting(), 'idempotent');
});

test('with an inherited socket the path stays: a client after the last accept waits for the next instance', async (t) => {
  if (!needsRoot(t)) return;
  const socketPath = join(tempDir(t), 'activated.sock');
  // Stands in for systemd's copy of the socket, which outlives the daemon.
  const systemdFd = native.listenSeqpacket(socketPath, 16);
  t.teardown(() => native.close(systemdFd));

  const first = makeServer(t, { socketPath, inheritedFd: dup(t, systemdFd) });
  first.start();
  const early = WireClient.connect(socketPath);
  t.teardown(() => early.close());
  t.false(first.stopAccepting(), 'a waiting client cancels the exit');
  t.is(first.connectionCount, 1);
  t.is(await early.hello(), 'test');
  early.close();
  await until(() => first.connectionCount === 0);

  t.true(first.stopAccepting(), 'nobody waiting: the server stops');
  t.true(lstatSync(socketPath).isSocket(), 'never unlinks a socket it did not create');
  // A client after the last accept queues on systemd's socket, alive for the next instance.
  const later = WireClient.connect(socketPath);
  t.teardown(() => later.close());
  const next = makeServer(t, { socketPath, inheritedFd: dup(t, systemdFd) });
  next.start();
  t.is(await later.hello(), 'test');
});

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!condition()) throw new Error('timed out');
}
