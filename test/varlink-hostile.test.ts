// Hostile Varlink clients cost only themselves (docs/storage-provider.md, "Hostile
// clients"): every protocol violation — not JSON, not an object, an unknown key, a bad
// flag, invalid UTF-8, a message over the bound or never finished, fds from the client —
// drops exactly that connection, logged once, after the calls before it were answered;
// a client that never reads is dropped with its queued fds; partial reads and writes
// both ways keep every message whole and every fd on its reply. The daemon's fd count is
// back at its baseline after each.
import test from 'ava';
import { openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { closeAcquired, expectAcquired, expectError, PROVIDER, startVarlinkBroker } from './helpers/varlink.js';
import { native } from '../native/index.js';
import { sleep, within } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { VarlinkClient } from '../testkit/varlink-client.js';
import { MAX_MESSAGE_BYTES } from '../src/varlink/message.js';

const VIOLATION = 'protocol violation; dropping connection';
const GET_INFO = '{"method":"org.varlink.service.GetInfo"}\0';

test('each protocol violation drops its connection, after answering the calls before it; the daemon serves on', async (t) => {
  if (!needsRoot(t)) return;
  const { daemon, path, client } = await startVarlinkBroker(t, { capture: 'counts' });
  await client.call1('org.varlink.service.GetInfo');
  const baseline = await daemon.stableFdCount();
  const violations: [string, Buffer][] = [
    ['not JSON', Buffer.from('not json\0')],
    ['an empty message', Buffer.from('\0')],
    ['an array', Buffer.from('[1,2]\0')],
    ['a string', Buffer.from('"GetInfo"\0')],
    ['no method', Buffer.from('{"parameters":{}}\0')],
    ['a method that is no string', Buffer.from('{"method":5}\0')],
    ['an unknown key', Buffer.from('{"method":"org.varlink.service.GetInfo","id":1}\0')],
    ['a flag that is no boolean', Buffer.from('{"method":"org.varlink.service.GetInfo","more":"yes"}\0')],
    ['more and oneway', Buffer.from('{"method":"org.varlink.service.GetInfo","more":true,"oneway":true}\0')],
    ['parameters that are an array', Buffer.from('{"method":"org.varlink.service.GetInfo","parameters":[1]}\0')],
    ['invalid UTF-8', Buffer.concat([Buffer.from('{"method":"org.varlink.service.GetInfo","parameters":{"x":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}\0')])],
    ['a finished message over the bound', Buffer.from(`{"method":"org.varlink.service.GetInfo","parameters":{"x":"${'x'.repeat(MAX_MESSAGE_BYTES)}"}}\0`)],
    ['an unfinished message over the bound', Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20)],
  ];
  for (const [what, bytes] of violations) {
    const before = daemon.count(VIOLATION);
    const hostile = VarlinkClient.connect(path);
    t.teardown(() => hostile.close());
    const answered = hostile.expectReplies(1);
    hostile.sendRaw(Buffer.concat([Buffer.from(GET_INFO), bytes]));
    const [reply] = await within(answered, 5000, `${what}: the call before it`);
    t.like(reply![0]!.parameters, { vendor: 'diskseqd' }, `${what}: the call before the violation is answered`);
    t.not((await within(hostile.whenClosed(), 5000, `${what}: dropped`)).kind, 'local', what);
    t.is(await daemon.waitForCount(VIOLATION, before + 1), before + 1, `${what}: logged once`);
  }
  t.true(daemon.alive);
  t.like((await client.call1('org.varlink.service.GetInfo')).parameters, { vendor: 'diskseqd' }, 'the first client is still served');
  t.is(await daemon.settleFds(baseline), baseline, `fds back at the baseline:\n${daemon.fdTargets().join('\n')}`);
});

test('upgrade is refused with InvalidParameter: no method here hands its connection over', async (t) => {
  if (!needsRoot(t)) return;
  const { client } = await startVarlinkBroker(t);
  expectError(t, await client.call1('org.varlink.service.GetInfo', {}, { upgrade: true }), 'org.varlink.service.InvalidParameter', { parameter: 'upgrade' });
  t.like((await client.call1('org.varlink.service.GetInfo')).parameters, { vendor: 'diskseqd' });
});

test('a message that is never finished: dropped after the stall timeout, its bytes freed', async (t) => {
  if (!needsRoot(t)) return;
  const { daemon, path } = await startVarlinkBroker(t, { extraArgs: ['--stall-timeout-ms', '300'] });
  const baseline = await daemon.stableFdCount();
  const slow = VarlinkClient.connect(path);
  t.teardown(() => slow.close());
  slow.sendRaw(Buffer.from('{"method":"org.varlink.service.'));
  await sleep(100);
  slow.sendRaw(Buffer.from('Get')); // trickling bytes does not restart the clock
  const closed = await within(slow.whenClosed(), 5000, 'the unfinished message dropped');
  t.is(closed.kind, 'peer-closed');
  t.truthy(daemon.logs.find((l) => l.msg === VIOLATION && /unfinished after 300 ms/.test(String(l.reason))));
  t.is(await daemon.settleFds(baseline), baseline);
});

test('fds sent by the client are closed and cost it the connection', async (t) => {
  if (!needsRoot(t)) return;
  const { daemon, path } = await startVarlinkBroker(t);
  const file = join(daemon.dir, 'passed');
  writeFileSync(file, 'x');
  const baseline = await daemon.stableFdCount();
  for (const bytes of [GET_INFO, '{"method":"org.varlink.ser']) {
    const hostile = VarlinkClient.connect(path);
    t.teardown(() => hostile.close());
    const fd = openSync(file, 'r');
    hostile.sendRaw(Buffer.from(bytes), fd); // ours is closed once sent
    await within(hostile.whenClosed(), 5000, 'dropped for sending an fd');
  }
  t.is(await daemon.settleFds(baseline), baseline, `the passed fds were closed:\n${daemon.fdTargets().join('\n')}`);
  t.is(daemon.logs.filter((l) => l.msg === VIOLATION && /client sent 1 fds/.test(String(l.reason))).length, 2);
});

test('partial reads and writes: a call sent a byte at a time, and 1 MiB of replies read late with an fd in the middle', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { daemon, path, client } = await startVarlinkBroker(t);
  const call = Buffer.from(`{"method":"${PROVIDER}.Acquire","parameters":{"name":"${loop.diskseq}","readOnly":true}}\0`);
  const pending = client.expectReplies(1);
  for (const byte of call) {
    client.sendRaw(Buffer.from([byte]));
    await sleep(1);
  }
  closeAcquired(expectAcquired(t, (await pending)[0]![0]!, loop.diskseq, true, 'byte by byte'));

  // A client that does not read for a while: the daemon's writes go partial, and the reply
  // carrying the fd must still start its own sendmsg.
  const fd = native.connectStream(path, true);
  const describe = `{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"${PROVIDER}"}}\0`;
  const calls = [...Array(100).fill(describe), call.toString(), ...Array(100).fill(describe)].join('');
  let offset = 0;
  const bytes = Buffer.from(calls);
  while (offset < bytes.length) {
    offset += native.sendStream(fd, bytes, offset, -1);
    await sleep(1);
  }
  await sleep(300);
  const late = VarlinkClient.adopt(fd);
  t.teardown(() => late.close());
  const replies = (await within(late.expectReplies(201), 10_000, '201 replies')).map((r) => r[0]!);
  t.true(replies.slice(0, 100).every((r) => typeof r.parameters.description === 'string' && r.fds.length === 0));
  const acquired = expectAcquired(t, replies[100]!, loop.diskseq, true, 'the fd rides with the Acquire reply');
  closeAcquired(acquired);
  t.true(replies.slice(101).every((r) => typeof r.parameters.description === 'string' && r.fds.length === 0));
  t.true(daemon.alive);
});

test('a client that never reads its replies is dropped by the stall timeout, its queued fds closed', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { daemon, path } = await startVarlinkBroker(t, { extraArgs: ['--stall-timeout-ms', '500'] });
  const baseline = await daemon.stableFdCount();
  const fd = native.connectStream(path, true);
  t.teardown(() => { try { native.close(fd); } catch { /* closed */ } });
  const call = Buffer.from(`{"method":"${PROVIDER}.Acquire","parameters":{"name":"${loop.diskseq}","readOnly":true}}\0`.repeat(64));
  const deadline = Date.now() + 3000;
  let sent = 0;
  while (Date.now() < deadline) {
    try {
      const n = native.sendStream(fd, call, sent % call.length, -1);
      sent += n;
      if (n === 0) await sleep(5);
    } catch {
      break; // the daemon dropped us
    }
  }
  const drop = await daemon.waitForLog((l) => l.msg === 'client does not read its responses; dropped with its queued fds', 10_000);
  // Its socket is kept, shut down, while it holds fds it has not received (docs/design.md,
  // "Limits: fds in flight"); nothing else.
  const kept = Number(drop.unreceivedFds) > 0 ? 1 : 0;
  t.is(await daemon.settleFds(baseline + kept), baseline + kept, `queued fds closed:\n${daemon.fdTargets().join('\n')}`);
  native.close(fd);
  t.is(await daemon.settleFds(baseline), baseline, `the client gone, its socket too:\n${daemon.fdTargets().join('\n')}`);
  t.true(daemon.alive);
});
