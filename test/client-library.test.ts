// The client library against the real daemon and real loop devices: what it resolves
// with is an fd it has itself checked, and refusals are typed errors with the daemon's code.
import test from 'ava';
import { closeSync } from 'node:fs';
import { connect, DiskseqError, type Client } from '../client/index.js';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

async function libraryClient(t: { teardown(fn: () => void): void }, socketPath: string): Promise<Client> {
  const client = await connect({ socketPath });
  t.teardown(() => client.close());
  return client;
}

test('client.open resolves with an fd bound to the requested instance, re-checked in this process', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { daemon } = await startBroker(t);
  const client = await libraryClient(t, daemon.socketPath);

  const { fd, device } = await client.open({ diskseq: loop.diskseq, partition: 1 });
  try {
    t.is(native.probeFdSync(fd).diskseq, loop.diskseq);
    t.is(readMarker(fd, 0), loop.image.partitions[0]!.marker);
    t.is(device.diskseq, loop.diskseq);
    t.is(device.partition, 1);
    t.is(device.name, loop.partitionName(1));
  } finally {
    closeSync(fd);
  }
});

test('refusals are DiskseqErrors carrying the daemon\'s code', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const gone = loop.diskseq;
  loop.reattach();
  const { daemon } = await startBroker(t);
  const client = await libraryClient(t, daemon.socketPath);

  await t.throwsAsync(client.open({ diskseq: gone }), { instanceOf: DiskseqError, code: 'NOT_FOUND' } as never);
  await t.throwsAsync(client.open({ diskseq: loop.diskseq, expect: { size: '1' } }), { instanceOf: DiskseqError, code: 'EXPECTATION_FAILED' } as never);
  const held = await client.open({ diskseq: loop.diskseq, exclusive: true });
  try {
    const error = await t.throwsAsync(client.open({ diskseq: loop.diskseq, exclusive: true }), { instanceOf: DiskseqError });
    t.is((error as DiskseqError | undefined)?.code, 'BUSY');
    t.is((error as DiskseqError | undefined)?.osErrno, 16);
  } finally {
    closeSync(held.fd);
  }
  // The connection is still good after refusals.
  const ok = await client.open({ diskseq: loop.diskseq });
  t.is(readMarker(ok.fd, 0), loop.image.diskMarker);
  closeSync(ok.fd);
});

test('pipelined opens on one connection each get their own device', async (t) => {
  if (!needsRoot(t)) return;
  const a = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const b = createLoop({}, t);
  const { daemon } = await startBroker(t);
  const client = await libraryClient(t, daemon.socketPath);

  const wanted = [
    { diskseq: a.diskseq, partition: 0, marker: a.image.diskMarker },
    { diskseq: a.diskseq, partition: 1, marker: a.image.partitions[0]!.marker },
    { diskseq: a.diskseq, partition: 2, marker: a.image.partitions[1]!.marker },
    { diskseq: b.diskseq, partition: 0, marker: b.image.diskMarker },
  ];
  const requests = Array.from({ length: 64 }, (_, i) => wanted[i % wanted.length]!);
  const results = await Promise.allSettled(requests.map((w) => client.open({ diskseq: w.diskseq, partition: w.partition })));
  let good = 0;
  for (const [i, result] of results.entries()) {
    if (result.status === 'rejected') {
      t.fail(`request ${i}: ${String(result.reason)}`);
      continue;
    }
    try {
      if (readMarker(result.value.fd, 0) === requests[i]!.marker) good++;
    } finally {
      closeSync(result.value.fd);
    }
  }
  t.is(good, requests.length, 'every pipelined response went to its own request');
});

test('an aborted open rejects with AbortError and leaves the connection usable', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { daemon } = await startBroker(t);
  const client = await libraryClient(t, daemon.socketPath);
  // Warm up first: the daemon may allocate long-lived fds on its first open.
  closeSync((await client.open({ diskseq: loop.diskseq })).fd);
  const fdsBefore = await daemon.stableFdCount();

  const controller = new AbortController();
  controller.abort();
  await t.throwsAsync(client.open({ diskseq: loop.diskseq, signal: controller.signal }), { name: 'AbortError' });
  // Aborted while in flight: the fd that arrives later is closed by the library.
  const inFlight = new AbortController();
  const pending = client.open({ diskseq: loop.diskseq, signal: inFlight.signal });
  inFlight.abort();
  await t.throwsAsync(pending, { name: 'AbortError' });

  const ok = await client.open({ diskseq: loop.diskseq });
  t.is(readMarker(ok.fd, 0), loop.image.diskMarker);
  closeSync(ok.fd);
  t.is(await daemon.settleFds(fdsBefore), fdsBefore, 'nothing left open in the daemon');
});
