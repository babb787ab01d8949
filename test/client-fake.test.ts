// The client library against a scripted fake daemon (test/client-fake-daemon.ts): request
// pipelining with out-of-order answers, multi-packet lists, typed errors, the client's own
// fd re-check, protocol violations, abort and close — with fd accounting where fds flow.
import { readSync, openSync } from 'node:fs';
import anyTest from 'ava';
import {
  AbortError, connect, ConnectionError, DiskseqError, type DiskseqErrorCode, type OpenOptions,
} from '../client/index.js';
import { ERROR_CODE_NAMES, ErrorCode, EventKind } from '../proto/contract.js';
import { native } from '../native/index.js';
import { fdCount } from '../testkit/proc.js';
import {
  claimTestLoop, devNullFd, FakeDaemon, loopWireDevice, wireDevice,
} from './helpers/fake-daemon.js';
import { needsRoot } from './helpers/ci.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';

// Serial: several tests count this process's open fds.
const test = anyTest.serial;

async function setup(t: import('ava').ExecutionContext) {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  // The fake accepts on its next loop turn; a round trip makes both ends exist before a
  // test takes its fd baseline.
  await roundTrip(daemon, client);
  return { daemon, client };
}

/** A round trip on the connection: every packet sent before it has been handled. */
async function roundTrip(daemon: FakeDaemon, client: Awaited<ReturnType<typeof connect>>): Promise<void> {
  const hello = client.hello('sync');
  daemon.respond(await daemon.nextRequest(), { hello: { protocolVersion: 1, serverVersion: 'fake' } });
  await hello;
}

test('pipelined requests are matched to out-of-order responses by id', async (t) => {
  const { daemon, client } = await setup(t);
  const hello = client.hello('pipeline-test');
  const list = client.list();
  const open = client.open({ diskseq: 77, partition: 2 });
  const [helloReq, listReq, openReq] = await daemon.nextRequests(3);
  t.is(helloReq!.request.hello?.clientName, 'pipeline-test');
  t.is(helloReq!.request.hello?.protocolVersion, 1);
  t.is(openReq!.request.open?.diskseq?.toString(), '77');
  t.is(openReq!.request.open?.partition, 2);
  t.not(helloReq!.request.id.toString(), openReq!.request.id.toString());
  // Answer in reverse order.
  daemon.respond(openReq!, { error: { code: ErrorCode.ERROR_CODE_NOT_FOUND, message: 'no such disk' } });
  daemon.respond(listReq!, { devices: { devices: [wireDevice(5n)] } });
  daemon.respond(helloReq!, { hello: { protocolVersion: 1, serverVersion: 'fake 1.0', features: ['watch'] } });
  t.deepEqual(await hello, { protocolVersion: 1, serverVersion: 'fake 1.0', features: ['watch'] });
  const devices = await list;
  t.is(devices.length, 1);
  t.is(devices[0]!.diskseq, 5n);
  const error = await t.throwsAsync(open, { instanceOf: DiskseqError });
  t.is(error!.code, 'NOT_FOUND');
  t.is(error!.message, 'no such disk');
});

test('a list split over several packets is joined, other answers interleaved', async (t) => {
  const { daemon, client } = await setup(t);
  const list = client.list({ includePartitions: true });
  const hello = client.hello();
  const [listReq, helloReq] = await daemon.nextRequests(2);
  t.true(listReq!.request.list?.includePartitions);
  daemon.respond(listReq!, { devices: { devices: [wireDevice(1n), wireDevice(1n, 1)], more: true } });
  daemon.respond(helloReq!, { hello: { protocolVersion: 1 } });
  daemon.respond(listReq!, { devices: { devices: [], more: true } });
  daemon.respond(listReq!, { devices: { devices: [wireDevice(2n, 0, { attributes: { ro: '0' } })], more: false } });
  t.is((await hello).protocolVersion, 1);
  const devices = await list;
  t.deepEqual(devices.map((d) => `${d.diskseq}p${d.partition}`), ['1p0', '1p1', '2p0']);
  t.deepEqual(devices[2]!.attributes, { ro: '0' });
  t.is(devices[2]!.sizeBytes, 1048576n);
});

// The generated enum is the one list of codes; the client derives its names from it.
const codes: readonly DiskseqErrorCode[] = ERROR_CODE_NAMES;

test('every wire ErrorCode becomes a DiskseqError with its code, wire value and os_errno', async (t) => {
  t.is(codes.length, 11, 'protocol version 1 has eleven error codes');
  t.is(codes[0], 'UNSPECIFIED');
  const { daemon, client } = await setup(t);
  const opens = codes.map((_, i) => client.open({ diskseq: BigInt(i + 1) }));
  const requests = await daemon.nextRequests(codes.length);
  requests.forEach((request, i) => {
    const wireCode = ErrorCode[`ERROR_CODE_${codes[i]}` as keyof typeof ErrorCode] as number;
    daemon.respond(request, { error: { code: wireCode, message: `m${i}`, osErrno: i === 4 ? 16 : 0 } });
  });
  for (const [i, open] of opens.entries()) {
    const error = await t.throwsAsync(open, { instanceOf: DiskseqError });
    t.is(error!.code, codes[i]);
    t.is(error!.wireCode, i);
    t.is(error!.osErrno, i === 4 ? 16 : 0);
    t.is(error!.message, `m${i}`);
  }
});

test('an unknown wire error code maps to UNSPECIFIED and keeps its value', async (t) => {
  const { daemon, client } = await setup(t);
  const open = client.open({ diskseq: 3 });
  daemon.respond(await daemon.nextRequest(), { error: { code: 99 as ErrorCode } });
  const error = await t.throwsAsync(open, { instanceOf: DiskseqError });
  t.is(error!.code, 'UNSPECIFIED');
  t.is(error!.wireCode, 99);
});

test('an fd that is not the requested disk (here /dev/null) is closed and rejected as STALE', async (t) => {
  const { daemon, client } = await setup(t);
  const baseline = fdCount(process.pid);
  const open = client.open({ diskseq: 12 });
  daemon.respond(await daemon.nextRequest(), { opened: { device: wireDevice(12n) } }, devNullFd());
  const error = await t.throwsAsync(open, { instanceOf: DiskseqError });
  t.is(error!.code, 'STALE');
  t.is(fdCount(process.pid), baseline);
});

test('Opened without an fd, an fd with an Error or a DeviceList, and a duplicate Opened: all fds closed', async (t) => {
  const { daemon, client } = await setup(t);
  const baseline = fdCount(process.pid);
  const noFd = client.open({ diskseq: 1 });
  const duplicate = client.open({ diskseq: 2 });
  const errorWithFd = client.open({ diskseq: 3 });
  const listWithFd = client.list();
  const [r1, r2, r3, r4] = await daemon.nextRequests(4);
  daemon.respond(r1!, { opened: { device: wireDevice(1n) } });
  // (One packet with two fds cannot be sent through the addon, which sends at most one; a
  // second Opened for an id already answered must be treated as unknown.)
  daemon.respond(r2!, { opened: { device: wireDevice(2n) } }, devNullFd());
  daemon.respond(r2!, { opened: { device: wireDevice(2n) } }, devNullFd());
  daemon.respond(r3!, { error: { code: ErrorCode.ERROR_CODE_BUSY } }, devNullFd());
  daemon.respond(r4!, { devices: { devices: [] } }, devNullFd());
  for (const promise of [noFd, errorWithFd, listWithFd]) {
    const error = await t.throwsAsync(promise, { instanceOf: DiskseqError });
    t.is(error!.code, 'INTERNAL');
  }
  // r2's first answer had one fd of /dev/null: STALE (closed); the duplicate answer is
  // for an id no longer pending, so its fd is closed on arrival.
  t.is((await t.throwsAsync(duplicate, { instanceOf: DiskseqError }))!.code, 'STALE');
  await roundTrip(daemon, client);
  t.is(fdCount(process.pid), baseline);
  t.false(client.isClosed);
});

test('aborting an open rejects at once; the fd answered later is closed on arrival', async (t) => {
  const { daemon, client } = await setup(t);
  const baseline = fdCount(process.pid);
  const controller = new AbortController();
  const open = client.open({ diskseq: 9, signal: controller.signal });
  const request = await daemon.nextRequest();
  controller.abort(new Error('changed my mind'));
  const error = await t.throwsAsync(open, { instanceOf: AbortError });
  t.is(error!.name, 'AbortError');
  t.is((error!.cause as Error).message, 'changed my mind');
  const fd = devNullFd();
  t.is(fdCount(process.pid), baseline + 1);
  daemon.respond(request, { opened: { device: wireDevice(9n) } }, fd);
  await roundTrip(daemon, client);
  t.is(fdCount(process.pid), baseline);
});

test('one signal shared by a batch aborts them all with one listener; late fds are closed', async (t) => {
  const { daemon, client } = await setup(t);
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(warning.name);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const baseline = fdCount(process.pid);
  const controller = new AbortController();
  // One request on the signal completes first: its settled state must not be disturbed.
  const done = client.hello('first');
  const opens = Array.from({ length: 20 }, (_, i) => client.open({ diskseq: i + 1, signal: controller.signal }));
  const [helloRequest, ...requests] = await daemon.nextRequests(21);
  daemon.respond(helloRequest!, { hello: { protocolVersion: 1 } });
  await done;
  controller.abort();
  for (const open of opens) await t.throwsAsync(open, { instanceOf: AbortError });
  for (const request of requests) daemon.respond(request, { opened: { device: wireDevice(1n) } }, devNullFd());
  await roundTrip(daemon, client);
  await new Promise((resolve) => setImmediate(resolve));
  t.is(fdCount(process.pid), baseline);
  t.deepEqual(warnings, []);
});

test('an already aborted signal rejects without sending', async (t) => {
  const { daemon, client } = await setup(t);
  const open = client.open({ diskseq: 9, signal: AbortSignal.abort() });
  await t.throwsAsync(open, { instanceOf: AbortError });
  const hello = client.hello('after');
  const next = await daemon.nextRequest();
  t.is(next.request.body, 'hello');
  daemon.respond(next, { hello: { protocolVersion: 1 } });
  await hello;
});

test('an undecodable response closes the connection and fails every pending request', async (t) => {
  const { daemon, client } = await setup(t);
  const first = client.open({ diskseq: 1 });
  const second = client.list();
  const [request] = await daemon.nextRequests(2);
  daemon.sendRaw(request!.connection, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]));
  for (const promise of [first, second]) {
    const error = await t.throwsAsync(promise, { instanceOf: DiskseqError });
    t.is(error!.code, 'INTERNAL');
    t.regex(error!.message, /protocol error/);
  }
  t.true(client.isClosed);
  await t.throwsAsync(client.hello(), { instanceOf: DiskseqError });
});

test('close() rejects pending requests with a connection-closed error and is idempotent', async (t) => {
  const { daemon, client } = await setup(t);
  const open = client.open({ diskseq: 4 });
  await daemon.nextRequest();
  client.close();
  client.close();
  const error = await t.throwsAsync(open, { instanceOf: ConnectionError });
  t.is(error!.code, 'CONNECTION_CLOSED');
  t.regex(error!.message, /connection closed/);
  await t.throwsAsync(client.open({ diskseq: 4 }), { instanceOf: ConnectionError });
  await daemon.connections[0]!.closed;
});

test('the daemon going away fails pending requests', async (t) => {
  const { daemon, client } = await setup(t);
  const open = client.open({ diskseq: 4 });
  (await daemon.nextRequest()).connection.socket.close();
  const error = await t.throwsAsync(open, { instanceOf: ConnectionError });
  t.regex(error!.message, /diskseqd closed the connection/);
});

test('connecting to a missing socket gives a clear ENOENT ConnectionError', async (t) => {
  const error = await t.throwsAsync(connect({ socketPath: '/nonexistent/diskseqd.sock' }), { instanceOf: ConnectionError });
  t.is(error!.code, 'ENOENT');
  t.regex(error!.message, /^cannot connect to diskseqd at \/nonexistent\/diskseqd\.sock: /);
});

test('arguments the daemon would refuse fail locally, all as DiskseqError INVALID_ARGUMENT, before anything is sent', async (t) => {
  const { daemon, client } = await setup(t);
  const invalid: OpenOptions[] = [
    { diskseq: 0 }, { diskseq: 0n }, { diskseq: '0' }, { diskseq: -1 }, { diskseq: -1n }, { diskseq: 1.5 }, { diskseq: Number.NaN },
    { diskseq: 2 ** 60 }, { diskseq: '18446744073709551616' }, { diskseq: '-3' }, { diskseq: ' 4' }, { diskseq: null as unknown as number },
    { diskseq: 1, partition: 1.5 }, { diskseq: 1, partition: -1 }, { diskseq: 1, waitMs: -5 }, { diskseq: 1, waitMs: 2 ** 32 },
    { diskseq: 1, access: 'append' as 'read-only' }, { diskseq: 1, exclusive: 'yes' as unknown as boolean },
    { diskseq: 1, expect: { ro: 1 as unknown as string } }, { diskseq: 1, expect: { size: 'x'.repeat(5000) } },
  ];
  for (const options of invalid) {
    const error = await t.throwsAsync(client.open(options), { instanceOf: DiskseqError }, JSON.stringify(options, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)));
    t.is(error?.code, 'INVALID_ARGUMENT');
  }
  await t.throwsAsync(client.list({ includePartitions: 'yes' as unknown as boolean }), { instanceOf: DiskseqError, message: /includePartitions/ });
  // Nothing reached the daemon: the next request it sees is this hello.
  const hello = client.hello('after');
  const request = await daemon.nextRequest();
  t.is(request.request.hello?.clientName, 'after');
  daemon.respond(request, { hello: { protocolVersion: 1 } });
  await hello;
});

test('open sends every option on the wire', async (t) => {
  const { daemon, client } = await setup(t);
  const open = client.open({ diskseq: '18446744073709551615', partition: 3, access: 'write-only', exclusive: true,
    direct: true, nonblock: true, sync: true, dsync: true, waitMs: 2500, expect: { 'loop/backing_file': '/x' } });
  const request = await daemon.nextRequest();
  const o = request.request.open!;
  t.is(o.diskseq!.toString(), '18446744073709551615');
  t.deepEqual([o.partition, o.access, o.exclusive, o.direct, o.nonblock, o.sync, o.dsync, o.waitMs],
    [3, 2, true, true, true, true, true, 2500]);
  t.deepEqual({ ...o.expect }, { 'loop/backing_file': '/x' });
  daemon.respond(request, { error: { code: ErrorCode.ERROR_CODE_TIMEOUT } });
  t.is((await t.throwsAsync(open, { instanceOf: DiskseqError }))!.code, 'TIMEOUT');
});

test('watch answered UNSUPPORTED throws DiskseqError UNSUPPORTED from the iterator', async (t) => {
  const { daemon, client } = await setup(t);
  const watch = client.watch();
  const request = await daemon.nextRequest();
  t.is(request.request.body, 'watch');
  daemon.respond(request, { error: { code: ErrorCode.ERROR_CODE_UNSUPPORTED, message: 'watch comes later' } });
  const error = await t.throwsAsync(async () => {
    for await (const _event of watch) t.fail('no event expected');
  }, { instanceOf: DiskseqError });
  t.is(error!.code, 'UNSUPPORTED');
});

test('watch streams events on its own connection; breaking out closes that connection', async (t) => {
  const { daemon, client } = await setup(t);
  const watch = client.watch();
  const request = await daemon.nextRequest();
  t.not(request.connection, daemon.connections[0]);
  daemon.respond(request, { event: { kind: EventKind.EVENT_KIND_ADDED, device: wireDevice(8n) } });
  daemon.respond(request, { event: { kind: EventKind.EVENT_KIND_SYNCED } });
  daemon.respond(request, { event: { kind: EventKind.EVENT_KIND_REMOVED, device: wireDevice(8n) } });
  const seen: string[] = [];
  for await (const event of watch) {
    seen.push(`${event.kind}${event.device ? ` ${event.device.diskseq}` : ''}`);
    if (event.kind === 'removed') break;
  }
  t.deepEqual(seen, ['added 8', 'synced', 'removed 8']);
  await request.connection.closed;
  t.false(client.isClosed);
  await roundTrip(daemon, client);
});

test('client.close() ends a running watch', async (t) => {
  const { daemon, client } = await setup(t);
  const watch = client.watch();
  const request = await daemon.nextRequest();
  const next = watch.next();
  client.close();
  t.deepEqual(await next, { value: undefined, done: true });
  await request.connection.closed;
});

test('root: a verified loop device fd is delivered and reads its marker', async (t) => {
  if (!needsRoot(t)) return;
  const loop = claimTestLoop(t);
  const { daemon, client } = await setup(t);
  const baseline = fdCount(process.pid);
  const open = client.open({ diskseq: loop.diskseq });
  daemon.respond(await daemon.nextRequest(), { opened: { device: loopWireDevice(loop) } }, openSync(loop.path, 'r'));
  const { fd, device } = await open;
  try {
    t.is(device.diskseq, loop.diskseq);
    t.is(native.probeFdSync(fd).diskseq, loop.diskseq);
    const buffer = Buffer.alloc(16);
    readSync(fd, buffer, 0, 16, 0);
    t.is(buffer.toString('latin1'), loop.marker);
    t.is(fdCount(process.pid), baseline + 1);
  } finally {
    native.close(fd);
  }
});

test('root: a block device with another diskseq is closed and rejected as STALE', async (t) => {
  if (!needsRoot(t)) return;
  const loop = claimTestLoop(t);
  const { daemon, client } = await setup(t);
  const baseline = fdCount(process.pid);
  const wanted = loop.diskseq + 1000n;
  const open = client.open({ diskseq: wanted });
  // The fake daemon lies: it describes the requested diskseq but sends the loop's fd.
  const device = { ...loopWireDevice(loop), diskseq: wireDevice(wanted).diskseq };
  daemon.respond(await daemon.nextRequest(), { opened: { device } }, openSync(loop.path, 'r'));
  const error = await t.throwsAsync(open, { instanceOf: DiskseqError });
  t.is(error!.code, 'STALE');
  t.regex(error!.message, new RegExp(`reports diskseq ${loop.diskseq}, not the requested diskseq ${wanted}`));
  t.is(fdCount(process.pid), baseline);
});

// BLKGETDISKSEQ on a partition answers for its disk, so a daemon delivering the wrong
// partition of the right disk passes the diskseq check: the client's own check must read
// sysfs's `partition` of the fd's st_rdev. The fake daemon here lies consistently: the
// Opened describes the requested (diskseq, partition) with the dev_t of the fd it sends.
test('root: the whole disk or another partition delivered for a partition request (and vice versa) is closed as STALE', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 2], partscan: true }, t);
  const { daemon, client } = await setup(t);
  const node = (partition: number): string => (partition === 0 ? loop.devPath : `/dev/${loop.partitionName(partition)}`);
  const deliver = async (asked: number, sent: number) => {
    const fd = openSync(node(sent), 'r');
    const { rdevMajor: major, rdevMinor: minor } = native.probeFdSync(fd);
    const open = client.open({ diskseq: loop.diskseq, partition: asked });
    const device = wireDevice(loop.diskseq, asked, { name: loop.name, major, minor });
    daemon.respond(await daemon.nextRequest(), { opened: { device } }, fd);
    return open;
  };
  const baseline = fdCount(process.pid);
  for (const [asked, sent, what] of [[1, 0, 'the whole disk'], [1, 2, 'partition 2'], [0, 1, 'partition 1'], [2, 1, 'partition 1']] as const) {
    const error = await t.throwsAsync(deliver(asked, sent), { instanceOf: DiskseqError }, `asked ${asked}, sent ${sent}`);
    t.is(error!.code, 'STALE');
    t.regex(error!.message, new RegExp(`is ${what} of diskseq ${loop.diskseq}, not ${asked === 0 ? 'the whole disk' : `partition ${asked}`} as requested`));
    t.is(fdCount(process.pid), baseline, `the wrong fd was closed (asked ${asked}, sent ${sent})`);
  }
  // Control: the right partition passes the same check and reads its own marker.
  for (const partition of [0, 1, 2]) {
    const { fd, device } = await deliver(partition, partition);
    try {
      t.is(device.partition, partition);
      const offset = partition === 0 ? loop.image.diskMarkerOffset : 0;
      const want = partition === 0 ? loop.image.diskMarker : loop.image.partitions[partition - 1]!.marker;
      t.is(readMarker(fd, offset), want);
    } finally {
      native.close(fd);
    }
  }
  t.is(fdCount(process.pid), baseline);
});
