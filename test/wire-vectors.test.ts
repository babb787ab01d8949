// The wire test vectors (test/vectors/wire-vectors.json), shared with the Python client's
// suite so the two clients cannot drift from the contract. Requests go through the public
// client (client/index.js) to a raw SEQPACKET listener that compares the bytes; response
// packets go from that listener to the public client, whose result, error or events must
// be the vector's meaning. Packets that need an fd beside them (Opened) are only decoded.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, deviceToJSON, DiskseqError, type Client, type DeviceInfo, type WatchEvent } from '../client/index.js';
import { deviceFromWire } from '../client/device.js';
import { native } from '../native/index.js';
import { wire } from '../proto/contract.js';
import { REPO_ROOT } from '../testkit/repo.js';

interface Call {
  op: 'open' | 'list' | 'hello' | 'watch';
  diskseq?: string;
  partition?: number;
  access?: 'read-only' | 'read-write' | 'write-only';
  exclusive?: boolean;
  direct?: boolean;
  nonblock?: boolean;
  sync?: boolean;
  dsync?: boolean;
  waitMs?: number;
  expect?: Record<string, string>;
  includePartitions?: boolean;
  clientName?: string;
}
interface ErrorMeaning {
  code: string;
  wireCode?: number;
  message?: string;
  osErrno?: number;
}
interface Vectors {
  requests: { name: string; call: Call; hex: string }[];
  responses: { name: string; call: Call; packets: string[]; result?: Record<string, unknown>; events?: unknown[]; error?: ErrorMeaning }[];
  decode: { name: string; hex: string; response: Record<string, unknown> }[];
}

const vectors = JSON.parse(readFileSync(join(REPO_ROOT, 'test', 'vectors', 'wire-vectors.json'), 'utf8')) as Vectors;

/** A bare SEQPACKET listener: accepts, receives raw packets, sends raw packets. */
class RawListener {
  readonly dir = mkdtempSync(join(tmpdir(), 'diskseqd-vectors-'));
  readonly socketPath = join(this.dir, 'raw.sock');
  private readonly fd = native.listenSeqpacket(this.socketPath, 8);
  private readonly accepted: number[] = [];


  async accept(): Promise<number> {
    for (let i = 0; i < 500; i++) {
      const fd = native.accept(this.fd);
      if (fd !== null) {
        this.accepted.push(fd);
        return fd;
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    throw new Error('the client did not connect');
  }

  async receive(fd: number): Promise<Buffer> {
    const buffer = Buffer.alloc(8192);
    for (let i = 0; i < 500; i++) {
      const received = native.recv(fd, buffer);
      if (received !== null) {
        for (const stray of received.fds) native.close(stray);
        return Buffer.from(buffer.subarray(0, received.bytes));
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    throw new Error('the client sent nothing');
  }

  close(): void {
    for (const fd of this.accepted) native.close(fd);
    native.close(this.fd);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Issues `call` on a client (a watch: its own connection); the promise settles with the outcome. */
function issue(client: Client, call: Call): { outcome: Promise<unknown>; watchEvents: WatchEvent[] } {
  const watchEvents: WatchEvent[] = [];
  switch (call.op) {
    case 'open':
      return {
        watchEvents,
        outcome: client.open({
          diskseq: BigInt(call.diskseq!), partition: call.partition, access: call.access, exclusive: call.exclusive,
          direct: call.direct, nonblock: call.nonblock, sync: call.sync, dsync: call.dsync, waitMs: call.waitMs, expect: call.expect,
        }),
      };
    case 'list':
      return { watchEvents, outcome: client.list({ includePartitions: call.includePartitions ?? false }).then((devices) => ({ devices: devices.map(json) })) };
    case 'hello':
      return { watchEvents, outcome: client.hello(call.clientName ?? '').then((hello) => ({ hello })) };
    case 'watch': {
      const watch = client.watch();
      const outcome = (async () => {
        for await (const event of watch) watchEvents.push(event);
      })();
      return { watchEvents, outcome };
    }
  }
}

const json = (device: DeviceInfo): unknown => deviceToJSON(device);
const eventJSON = (event: WatchEvent): unknown => (event.device === undefined ? { kind: event.kind } : { kind: event.kind, device: json(event.device) });

function checkError(t: import('ava').ExecutionContext, error: unknown, meaning: ErrorMeaning): void {
  t.true(error instanceof DiskseqError, `a DiskseqError, got ${String(error)}`);
  const e = error as DiskseqError;
  t.is(e.code as string, meaning.code);
  if (meaning.wireCode !== undefined) t.is(e.wireCode, meaning.wireCode);
  if (meaning.message !== undefined) t.is(e.message, meaning.message);
  if (meaning.osErrno !== undefined) t.is(e.osErrno, meaning.osErrno);
}

/** The Request a packet holds, with every field (defaults included) and 64-bit values as strings. */
const requestObject = (bytes: Buffer): unknown => wire.Request.toObject(wire.Request.decode(bytes), { longs: String, enums: Number, defaults: true, oneofs: true });

for (const vector of vectors.requests) {
  test(`request vector: ${vector.name}`, async (t) => {
    const listener = new RawListener();
    t.teardown(() => listener.close());
    const client = await connect({ socketPath: listener.socketPath });
    t.teardown(() => client.close());
    const { outcome } = issue(client, vector.call);
    outcome.catch(() => undefined); // settles when the client closes
    let fd = await listener.accept();
    if (vector.call.op === 'watch') fd = await listener.accept(); // a watch has a connection of its own
    const sent = await listener.receive(fd);
    // The vector holds the canonical encoding (defaults omitted, map entries in key order).
    // protobufjs writes fields that are set explicitly even at their default value, which
    // any proto3 decoder reads the same: the contract is the decoded Request.
    t.deepEqual(requestObject(sent), requestObject(Buffer.from(vector.hex, 'hex')));
    if (sent.toString('hex') !== vector.hex) t.log(`same Request, not canonical bytes: ${sent.toString('hex')}`);
  });
}

for (const vector of vectors.responses) {
  test(`response vector: ${vector.name}`, async (t) => {
    const listener = new RawListener();
    t.teardown(() => listener.close());
    const client = await connect({ socketPath: listener.socketPath });
    t.teardown(() => client.close());
    const { outcome, watchEvents } = issue(client, vector.call);
    let fd = await listener.accept();
    if (vector.call.op === 'watch') fd = await listener.accept();
    const request = wire.Request.decode(await listener.receive(fd));
    t.is(request.id.toString(), '1');
    for (const hex of vector.packets) native.send(fd, Buffer.from(hex, 'hex'), -1);
    if (vector.call.op === 'watch') {
      // The stream goes on until an error, or until the listener closes it.
      const ended = outcome.then(() => undefined, (error: unknown) => error);
      if (vector.error === undefined) {
        for (let i = 0; i < 500 && watchEvents.length < vector.events!.length; i++) await new Promise((r) => setTimeout(r, 2));
        client.close();
      }
      const error = await ended;
      t.deepEqual(watchEvents.map(eventJSON), vector.events);
      if (vector.error !== undefined) checkError(t, error, vector.error);
      return;
    }
    if (vector.error !== undefined) checkError(t, await outcome.then(() => undefined, (error: unknown) => error), vector.error);
    else t.deepEqual(await outcome, vector.result);
  });
}

for (const vector of vectors.decode) {
  test(`decode vector: ${vector.name}`, (t) => {
    const response = wire.Response.decode(Buffer.from(vector.hex, 'hex'));
    const meaning: Record<string, unknown> = { id: response.id.toString(), body: response.body };
    if (response.body === 'opened') meaning.device = json(deviceFromWire(response.opened!.device!));
    if (response.body === 'event') {
      meaning.kind = ({ 1: 'added', 2: 'removed', 3: 'changed', 4: 'synced' } as Record<number, string>)[response.event!.kind ?? 0];
      meaning.device = json(deviceFromWire(response.event!.device!));
    }
    t.deepEqual(meaning, vector.response);
  });
}

