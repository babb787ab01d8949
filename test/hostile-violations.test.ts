// Each kind of protocol violation, one by one (the fuzz sends them at random): the packet
// costs exactly its own connection, nothing is answered, the drop is logged once, and a
// bystander connection open all along is unaffected.
import test from 'ava';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest, MAX_REQUEST_BYTES, varint } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { ask, outcomeOf, u64 } from './helpers/hostile-requests.js';
import { needsRoot } from './helpers/ci.js';

const VIOLATION_MSG = 'protocol violation; dropping connection';

/** A valid Hello padded with an unknown length-delimited field to exactly `size` bytes. */
function paddedHello(size: number): Buffer {
  const hello = encodeRequest({ id: u64(9), hello: { protocolVersion: 1 } });
  for (let prefix = 1; prefix <= 3; prefix++) {
    const pad = size - hello.length - 1 - prefix;
    if (pad >= 0 && varint(BigInt(pad)).length === prefix) {
      return Buffer.concat([hello, Buffer.from([0x7a]), varint(BigInt(pad)), Buffer.alloc(pad)]);
    }
  }
  throw new Error(`cannot pad to ${size}`);
}

test('each protocol violation drops only its own connection, unanswered, logged once', async (t) => {
  if (!needsRoot(t)) return; // the daemon needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  const bystander = new RawClient(daemon.socketPath);
  t.teardown(() => bystander.close());
  t.is(outcomeOf((await ask(bystander, { id: u64(1), hello: { protocolVersion: 1 } })).response), 'hello');

  const valid = encodeRequest({ id: u64(5), open: { diskseq: u64(12345), expect: { size: '8' } } });
  const violations: Array<[string, Buffer]> = [
    ['4097 bytes (valid protobuf, one byte too long)', paddedHello(MAX_REQUEST_BYTES + 1)],
    ['65536 bytes', paddedHello(65536)],
    ['a valid request cut short', valid.subarray(0, valid.length - 3)],
    ['a length prefix past the end', Buffer.from([0x1a, 0x7f, 0x08, 0x01])],
    ['wire type 7', Buffer.from([0x7f, 0x01])],
    ['wire type 6', Buffer.from([0x7e, 0x01])],
    ['an 11-byte varint', Buffer.concat([Buffer.from([0x08]), Buffer.alloc(10, 0xff), Buffer.from([0x01])])],
    ['an unterminated varint', Buffer.from([0x08, 0xff, 0xff])],
    ['an end-group tag with no group', Buffer.from([0x7c])],
    ['a message field sent as a varint', Buffer.from([0x18, 0x05])],
  ];
  for (const [what, data] of violations) {
    const logged = daemon.count(VIOLATION_MSG);
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    t.true((await client.send(data)).sent, `${what}: sent`);
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', `${what}: dropped without an answer (got ${answer === 'timeout' ? 'nothing' : answer.kind})`);
    t.is(await daemon.waitForCount(VIOLATION_MSG, logged + 1) - logged, 1, `${what}: logged once`);
    client.close();
  }
  // An empty packet reads as end-of-file on SEQPACKET, but the credentials SO_PASSCRED
  // attaches to every packet tell it apart: a violation, logged once, and the connection ends.
  {
    const logged = daemon.count(VIOLATION_MSG);
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    t.true((await client.send(Buffer.alloc(0))).sent);
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', 'an empty packet ends the connection');
    t.is(await daemon.waitForCount(VIOLATION_MSG, logged + 1) - logged, 1, 'an empty packet: logged once');
    t.is((await daemon.waitForLog((l) => l.msg === VIOLATION_MSG && l.reason === 'zero-length packet')).reason, 'zero-length packet');
    client.close();
  }
  // Exactly 4096 bytes is still a request.
  t.is(outcomeOf((await ask(bystander, { id: u64(2), hello: { protocolVersion: 1 } })).response), 'hello');
  t.true((await bystander.send(paddedHello(MAX_REQUEST_BYTES))).sent);
  const exact = await bystander.next(5000);
  t.true(exact !== 'timeout' && exact.kind === 'packet', 'a 4096-byte request is answered');
  t.false(bystander.isEnded, 'the bystander connection is unaffected');
  bystander.close();

  const fds = await daemon.settleFds(before.fds);
  t.log(`daemon after: ${describeFootprint(daemon.footprint())}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
});

// Known deviation, kept visible: protobuf forbids wire types 6 and 7 and field number 0, but
// the generated protobufjs decoder reads a known field by its declared type whatever the
// wire type says, and skips field 0 as unknown; so these packets decode to a Request
// (answered INVALID_ARGUMENT) instead of dropping the connection. Harmless to safety — the
// decoded request is validated like any other — but not "undecodable => drop" as the wire
// contract says. Fixing it (a strict tag check before decoding, in src/protocol.ts) turns
// this test into an unexpected pass: then make it a plain test.
test('packets protobuf forbids but protobufjs decodes also drop the connection', async (t) => {
  if (!needsRoot(t)) return; // the daemon needs root (its private-node directory in /dev)
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  for (const [what, data] of [['wire type 7 on field 1', Buffer.from([0x0f, 0x01])], ['field number 0', Buffer.from([0x00, 0x01])]] as const) {
    const client = new RawClient(daemon.socketPath);
    t.teardown(() => client.close());
    t.true((await client.send(data)).sent);
    const answer = await client.next(5000);
    t.true(answer !== 'timeout' && answer.kind !== 'packet', `${what}: dropped without an answer`);
  }
});
