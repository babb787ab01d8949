// Valid-but-odd requests (docs/design.md, "Wire contract"): each is an operational failure,
// answered with its own Error code, and the connection stays open — all of them go over one
// connection, which must still answer a Hello and open a device at the end. Also the
// 4096-byte boundary and a pipelined burst.
import test from 'ava';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import {
  encodeRequest, highestDiskseqNow, MAX_REQUEST_BYTES, varint,
} from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { createLoop } from '../testkit/loop.js';
import { needsRoot } from './helpers/ci.js';
import { ask, checkValidOpen, outcomeOf, readAnswer, u64 } from './helpers/hostile-requests.js';

type Case = [name: string, request: diskseqd.v1.IRequest, expected: string[]];

test('valid-but-odd requests get Error answers and the connection stays', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);
  const own = u64(loop.diskseq);
  const unseen = u64(highestDiskseqNow() + 1_000_000_000n);
  const cases: Case[] = [
    ['access 3', { open: { diskseq: own, access: 3 as diskseqd.v1.Access } }, ['INVALID_ARGUMENT']],
    ['access 1000', { open: { diskseq: own, access: 1000 as diskseqd.v1.Access } }, ['INVALID_ARGUMENT']],
    ['access -1', { open: { diskseq: own, access: -1 as diskseqd.v1.Access } }, ['INVALID_ARGUMENT']],
    ['diskseq 0', { open: { diskseq: u64(0) } }, ['INVALID_ARGUMENT']],
    ['diskseq 2^64-1', { open: { diskseq: u64(0xffffffffffffffffn) } }, ['NOT_FOUND']],
    ['diskseq 2^63', { open: { diskseq: u64(1n << 63n) } }, ['NOT_FOUND']],
    ['diskseq far above any seen', { open: { diskseq: unseen } }, ['NOT_FOUND']],
    ['diskseq far above any seen, wait_ms 50', { open: { diskseq: unseen, waitMs: 50 } }, ['NOT_FOUND', 'TIMEOUT']],
    ['partition 1 of a loop without partitions', { open: { diskseq: own, partition: 1 } }, ['NOT_FOUND']],
    ['partition 65535', { open: { diskseq: own, partition: 65535 } }, ['NOT_FOUND']],
    ['partition 2^31-1', { open: { diskseq: own, partition: 0x7fffffff } }, ['NOT_FOUND']],
    ['partition 2^32-1', { open: { diskseq: own, partition: 0xffffffff } }, ['NOT_FOUND']],
    ['expect ../../etc/shadow', { open: { diskseq: own, expect: { '../../etc/shadow': '' } } }, ['INVALID_ARGUMENT']],
    ['expect uevent', { open: { diskseq: own, expect: { uevent: 'x' } } }, ['INVALID_ARGUMENT']],
    ['expect dev', { open: { diskseq: own, expect: { dev: '7:0' } } }, ['INVALID_ARGUMENT']],
    ['expect empty key', { open: { diskseq: own, expect: { '': '' } } }, ['INVALID_ARGUMENT']],
    ['expect /sys/block/loop0/size', { open: { diskseq: own, expect: { '/sys/block/loop0/size': '0' } } }, ['INVALID_ARGUMENT']],
    ['expect size/../ro', { open: { diskseq: own, expect: { 'size/../ro': '0' } } }, ['INVALID_ARGUMENT']],
    ['expect an allowed key with a wrong value', { open: { diskseq: own, expect: { size: '1' } } }, ['EXPECTATION_FAILED']],
    ['expect an attribute the device lacks', { open: { diskseq: own, expect: { 'dm/name': '' } } }, ['EXPECTATION_FAILED']],
    ['hello version 0', { hello: { protocolVersion: 0 } }, ['UNSUPPORTED']],
    ['hello version 2', { hello: { protocolVersion: 2 } }, ['UNSUPPORTED']],
    ['hello version 2^32-1', { hello: { protocolVersion: 0xffffffff } }, ['UNSUPPORTED']],
    ['no body', {}, ['INVALID_ARGUMENT']],
  ];

  const client = new RawClient(daemon.socketPath);
  t.teardown(() => client.close());
  let id = 1000;
  for (const [name, request, expected] of cases) {
    const { response, fds } = await ask(client, { ...request, id: u64(++id) });
    t.is(fds.length, 0, `${name}: no fd`);
    t.is(response.id.toString(), String(id), `${name}: id echoed`);
    t.true(expected.includes(outcomeOf(response)), `${name}: got ${outcomeOf(response)} (${response.error?.message}), expected ${expected.join(' or ')}`);
  }

  // Ids are echoed verbatim, the largest included.
  const big = await ask(client, { id: u64(0xffffffffffffffffn), hello: { protocolVersion: 1 } });
  t.is(outcomeOf(big.response), 'hello');
  t.is(big.response.id.toUnsigned().toString(), '18446744073709551615');

  // Exactly 4096 bytes is a request; 4097 is a violation (next test file covers the drop).
  const hello = encodeRequest({ id: u64(7), hello: { protocolVersion: 1 } });
  const pad = MAX_REQUEST_BYTES - hello.length - 1 - 2;
  const exact = Buffer.concat([hello, Buffer.from([0x7a]), varint(BigInt(pad)), Buffer.alloc(pad)]);
  t.is(exact.length, MAX_REQUEST_BYTES);
  t.true((await client.send(exact)).sent);
  t.is(outcomeOf((await readAnswer(client)).response), 'hello', 'a 4096-byte request is answered');

  // A pipelined burst, sent without reading: every request answered once, by id.
  const burst = 1000;
  const want = new Map<string, string[]>();
  for (let i = 0; i < burst; i++) {
    const [name, request, expected] = cases[i % cases.length]!;
    const requestId = String(100_000 + i);
    want.set(requestId, expected.map((e) => `${name}: ${e}`));
    t.true((await client.send(encodeRequest({ ...request, id: u64(requestId) }))).sent);
  }
  for (let i = 0; i < burst; i++) {
    const { response, fds } = await readAnswer(client);
    t.is(fds.length, 0);
    const expected = want.get(response.id.toString());
    if (expected === undefined) {
      t.fail(`unexpected or second answer for id ${response.id}`);
      break;
    }
    want.delete(response.id.toString());
    const allowed = expected.map((e) => e.slice(e.lastIndexOf(': ') + 2));
    if (!allowed.includes(outcomeOf(response))) t.fail(`burst: ${expected[0]} answered ${outcomeOf(response)}`);
  }
  t.is(want.size, 0, 'every request of the burst answered');

  // The same connection still works, and so does a normal open.
  t.is(outcomeOf((await ask(client, { id: u64(1), hello: { protocolVersion: 1 } })).response), 'hello');
  t.false(client.isEnded);
  client.close();
  t.is(await checkValidOpen(daemon.socketPath, loop), undefined);
  const fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after: ${describeFootprint(after)}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().join('\n')}`);
});
