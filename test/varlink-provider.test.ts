// io.systemd.StorageProvider over Varlink against real loop devices, through the test
// client (which, unlike the Go one, receives the fds): Acquire of disks and partitions with
// readOnly true/false/null, names that are no disk instance, a stale diskseq after
// detach and re-attach, storage-block's refusals, ListVolumes and ListTemplates, oneway,
// pipelined calls answered in order, the audit line, and the status view's counts.
import test from 'ava';
import { connect } from '../client/index.js';
import { needsRoot } from './helpers/ci.js';
import { accessModeOf, closeAcquired, expectAcquired, expectError, PROVIDER, startVarlinkBroker } from './helpers/varlink.js';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { createLoop, readOnlyChangeableLoop, sysfsDiskseq } from '../testkit/loop.js';

const ACQUIRE = `${PROVIDER}.Acquire`;

test('Acquire: whole disk and partition, readOnly true / false / null on a writable disk', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client, daemon } = await startVarlinkBroker(t);
  const name = `${loop.diskseq}`;

  const rw = expectAcquired(t, await client.call1(ACQUIRE, { name }), loop.diskseq, false, 'readOnly absent');
  t.is(readMarker(rw, 0), loop.image.diskMarker);
  expectAcquired(t, await client.call1(ACQUIRE, { name, readOnly: null }), loop.diskseq, false, 'readOnly null');
  expectAcquired(t, await client.call1(ACQUIRE, { name, readOnly: false }), loop.diskseq, false, 'readOnly false');
  expectAcquired(t, await client.call1(ACQUIRE, { name, readOnly: true }), loop.diskseq, true, 'readOnly true');
  const part = expectAcquired(t, await client.call1(ACQUIRE, { name: `${name}-part1`, readOnly: true }), loop.diskseq, true, 'partition 1');
  t.is(readMarker(part, 0), loop.image.partitions[0]!.marker, 'partition 1, not the disk');
  // storage-block's other inputs: accepted, no effect.
  expectAcquired(t, await client.call1(ACQUIRE, {
    name, createMode: 'open', template: '', requestAs: 'blk', createSizeBytes: 1 << 20, allowInteractiveAuthentication: true, readOnly: true,
  }), loop.diskseq, true, 'every optional input');
  expectAcquired(t, await client.call1(ACQUIRE, { name, createMode: 'any', readOnly: true }), loop.diskseq, true, 'createMode any');

  t.is(await daemon.waitForCount('audit', 7), 7, 'one audit line per Acquire');
  const audits = daemon.audits().filter((a) => a.via === 'varlink' && a.op === 'open');
  t.like(audits[0], { decision: 'allow', code: 'OK', method: ACQUIRE, rule: 'root', device: { name: loop.name } });
  t.like(audits[0]!.request, { name, diskseq: name, partition: 0, access: 'read-write' });
  t.like(audits[4]!.request, { name: `${name}-part1`, partition: 1, access: 'read-only' });
});

test('Acquire on a read-only device: false is ReadOnlyVolume, null falls back to read-only, true is read-only', async (t) => {
  if (!needsRoot(t)) return;
  const loop = readOnlyChangeableLoop(t);
  const diskseq = sysfsDiskseq(loop.name);
  const { client } = await startVarlinkBroker(t);
  expectError(t, await client.call1(ACQUIRE, { name: `${diskseq}`, readOnly: false }), `${PROVIDER}.ReadOnlyVolume`, {}, 'readOnly false');
  const fd = expectAcquired(t, await client.call1(ACQUIRE, { name: `${diskseq}` }), diskseq, true, 'readOnly null');
  t.is(accessModeOf(fd), 'ro');
  expectAcquired(t, await client.call1(ACQUIRE, { name: `${diskseq}`, readOnly: true }), diskseq, true, 'readOnly true');
});

test('only N and N-partM are names: kernel names, paths and other spellings are NoSuchVolume; what is no name at all, InvalidParameter', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client, daemon } = await startVarlinkBroker(t);
  const d = loop.diskseq;
  const noSuch = [loop.name, loop.devPath, `/dev/disk/by-diskseq/${d}`, `${loop.name}p1`, `${d}p1`, `${d}-part0`, `0${d}`, `+${d}`,
    `${d} `, '0', `${d}-part01`, `${d}-part1-part1`, `${d + 1_000_000n}`, `${d}-part9`, '18446744073709551616'];
  for (const name of noSuch) expectError(t, await client.call1(ACQUIRE, { name }), `${PROVIDER}.NoSuchVolume`, {}, JSON.stringify(name));
  for (const name of ['', 'a\nb', `${d}\u0000`, 'x"y', "x'y", 'x\\y']) {
    expectError(t, await client.call1(ACQUIRE, { name }), 'org.varlink.service.InvalidParameter', { parameter: 'name' }, JSON.stringify(name));
  }
  t.true(daemon.audits().filter((a) => a.op === 'open').every((a) => a.device === undefined), 'no device was looked at for any of them');
});

test("storage-block's refusals: createMode new, a template, requestAs other than blk; createMode before any lookup", async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startVarlinkBroker(t);
  const name = `${loop.diskseq}`;
  const absent = `${loop.diskseq + 1_000_000n}`;
  for (const n of [name, absent]) {
    expectError(t, await client.call1(ACQUIRE, { name: n, createMode: 'new' }), `${PROVIDER}.CreateNotSupported`, {}, `new ${n}`);
    expectError(t, await client.call1(ACQUIRE, { name: n, template: 'fedora' }), `${PROVIDER}.NoSuchTemplate`, {}, `template ${n}`);
  }
  expectError(t, await client.call1(ACQUIRE, { name, template: 'a\tb' }), 'org.varlink.service.InvalidParameter', { parameter: 'template' });
  expectError(t, await client.call1(ACQUIRE, { name, requestAs: 'reg' }), `${PROVIDER}.TypeNotSupported`);
  expectError(t, await client.call1(ACQUIRE, { name, requestAs: 'dir' }), `${PROVIDER}.TypeNotSupported`);
  expectError(t, await client.call1(ACQUIRE, { name, requestAs: 'chr' }), 'org.varlink.service.InvalidParameter', { parameter: 'requestAs' });
  expectError(t, await client.call1(ACQUIRE, { name, createMode: 'maybe' }), 'org.varlink.service.InvalidParameter', { parameter: 'createMode' });
  expectError(t, await client.call1(ACQUIRE, { name, createSizeBytes: -1 }), 'org.varlink.service.InvalidParameter', { parameter: 'createSizeBytes' });
});

test('wrong parameter types, unknown and missing parameters are InvalidParameter naming the parameter', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client } = await startVarlinkBroker(t);
  const name = `${loop.diskseq}`;
  const cases: [Record<string, unknown> | null, string][] = [
    [{ name: Number(loop.diskseq) }, 'name'], [{}, 'name'], [null, 'name'], [{ name, readOnly: 'yes' }, 'readOnly'],
    [{ name, readOnly: 1 }, 'readOnly'], [{ name, createSizeBytes: 1.5 }, 'createSizeBytes'], [{ name, createSizeBytes: '1' }, 'createSizeBytes'],
    [{ name, template: 7 }, 'template'], [{ name, diskseq: 1 }, 'diskseq'], [{ name, allowInteractiveAuthentication: 'no' }, 'allowInteractiveAuthentication'],
  ];
  for (const [parameters, parameter] of cases) {
    expectError(t, await client.call1(ACQUIRE, parameters), 'org.varlink.service.InvalidParameter', { parameter }, JSON.stringify(parameters));
  }
  expectError(t, await client.call1(`${PROVIDER}.ListVolumes`, { matchName: 5 }, { more: true }), 'org.varlink.service.InvalidParameter', { parameter: 'matchName' });
  expectError(t, await client.call1(`${PROVIDER}.ListVolumes`, { matchName: '[' }, { more: true }), 'org.varlink.service.InvalidParameter', { parameter: 'matchName' });
  expectError(t, await client.call1('org.varlink.service.GetInterfaceDescription', {}), 'org.varlink.service.InvalidParameter', { parameter: 'interface' });
  expectError(t, await client.call1('org.varlink.service.GetInfo', { verbose: true }), 'org.varlink.service.InvalidParameter', { parameter: 'verbose' });
  t.is(client.closed, undefined, 'none of them cost the connection');
});

test('a stale diskseq after detach and re-attach: NoSuchVolume, never the new disk', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client } = await startVarlinkBroker(t);
  const old = loop.diskseq;
  const first = expectAcquired(t, await client.call1(ACQUIRE, { name: `${old}`, readOnly: true }), old, true, 'before');
  t.is(readMarker(first, 0), loop.image.diskMarker);
  closeAcquired(first);
  loop.reattach({ partitionsMiB: [2] });
  t.true(loop.diskseq > old);
  expectError(t, await client.call1(ACQUIRE, { name: `${old}` }), `${PROVIDER}.NoSuchVolume`, {}, 'old disk');
  expectError(t, await client.call1(ACQUIRE, { name: `${old}-part1` }), `${PROVIDER}.NoSuchVolume`, {}, 'old partition');
  const fresh = expectAcquired(t, await client.call1(ACQUIRE, { name: `${loop.diskseq}`, readOnly: true }), loop.diskseq, true, 'new');
  t.is(readMarker(fresh, 0), loop.image.diskMarker);
  const listed = await client.call(`${PROVIDER}.ListVolumes`, { matchName: `${old}*` }, { more: true });
  expectError(t, listed[0]!, `${PROVIDER}.NoSuchVolume`, {}, 'the old instance is not listed');
});

test('ListVolumes streams every disk and partition (more required, matchName a glob); ListTemplates has none', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2, 3], partscan: true }, t);
  const { client } = await startVarlinkBroker(t);
  const d = loop.diskseq;
  const replies = await client.call(`${PROVIDER}.ListVolumes`, { matchName: `${d}*` }, { more: true });
  t.deepEqual(replies.map((r) => r.parameters), [
    { name: `${d}`, type: 'blk', readOnly: false, sizeBytes: loop.image.sizeBytes },
    { name: `${d}-part1`, type: 'blk', readOnly: false, sizeBytes: 2 * 1024 * 1024 },
    { name: `${d}-part2`, type: 'blk', readOnly: false, sizeBytes: 3 * 1024 * 1024 },
  ]);
  t.deepEqual(replies.map((r) => r.continues), [true, true, false]);
  const parts = await client.call(`${PROVIDER}.ListVolumes`, { matchName: `${d}-part[!1]` }, { more: true });
  t.deepEqual(parts.map((r) => r.parameters.name), [`${d}-part2`]);
  const all = await client.call(`${PROVIDER}.ListVolumes`, null, { more: true });
  t.true(all.some((r) => r.parameters.name === `${d}-part1`), 'without matchName: everything');
  t.true(all.every((r) => typeof r.parameters.name === 'string' && /^[1-9][0-9]*(-part[1-9][0-9]*)?$/.test(r.parameters.name)), 'only volume names');
  expectError(t, (await client.call(`${PROVIDER}.ListVolumes`, { matchName: 'loop*' }, { more: true }))[0]!, `${PROVIDER}.NoSuchVolume`, {}, 'nothing matches');
  expectError(t, await client.call1(`${PROVIDER}.ListVolumes`, {}), 'org.varlink.service.ExpectedMore');
  expectError(t, (await client.call(`${PROVIDER}.ListTemplates`, { matchName: '*' }, { more: true }))[0]!, `${PROVIDER}.NoSuchTemplate`);
  expectError(t, await client.call1(`${PROVIDER}.ListTemplates`, {}), 'org.varlink.service.ExpectedMore');
});

test('pipelined calls are answered strictly in call order, a stream whole before the next; oneway calls get nothing and open nothing', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { client, daemon } = await startVarlinkBroker(t);
  const d = loop.diskseq;
  const fdsBefore = await daemon.stableFdCount();
  const calls = [
    { method: `${PROVIDER}.ListVolumes`, parameters: { matchName: `${d}*` }, more: true },
    { method: ACQUIRE, parameters: { name: `${d}` }, oneway: true },
    { method: ACQUIRE, parameters: { name: `${d}-part1`, readOnly: true } },
    { method: 'org.varlink.service.GetInfo' },
    { method: 'org.varlink.service.Nope', oneway: true },
    { method: `${PROVIDER}.ListVolumes`, parameters: { matchName: `${d}` }, more: true },
  ];
  // One write with every call: the daemon must not answer the Acquire inside the stream.
  const pending = client.expectReplies(4);
  client.sendRaw(Buffer.from(calls.map((c) => `${JSON.stringify(c)}\0`).join('')));
  const replies = (await pending).flat();
  t.deepEqual(replies.map((r) => r.parameters.name ?? r.parameters.readOnly ?? r.parameters.vendor), [`${d}`, `${d}-part1`, true, 'diskseqd', `${d}`]);
  t.deepEqual(replies.map((r) => r.fds.length), [0, 0, 1, 0, 0], 'the fd arrives with the Acquire reply');
  t.is(native.probeFdSync(replies[2]!.fds[0]!).diskseq, d);
  for (const r of replies) for (const fd of r.fds) native.close(fd);
  await daemon.waitForCount('audit', calls.length); // log lines arrive through a pipe
  const oneway = daemon.audits().filter((a) => a.oneway === true);
  t.deepEqual(oneway.map((a) => [a.method, a.code, a.decision, a.device]), [[ACQUIRE, 'NOT_PERFORMED', 'none', undefined], ['org.varlink.service.Nope', 'UNSUPPORTED', 'error', undefined]]);
  t.is(await daemon.settleFds(fdsBefore), fdsBefore, 'the oneway Acquire left no fd behind');
});

test('the status view counts Varlink calls with the SEQPACKET socket\'s requests', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const { client, daemon } = await startVarlinkBroker(t);
  closeAcquired(expectAcquired(t, await client.call1(ACQUIRE, { name: `${loop.diskseq}` }), loop.diskseq, false));
  expectError(t, await client.call1(ACQUIRE, { name: `${loop.diskseq + 1000000n}` }), `${PROVIDER}.NoSuchVolume`);
  t.is(await daemon.waitForCount('audit', 2), 2);
  const seqpacket = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => seqpacket.close());
  const opens = (await seqpacket.status()).requests.filter((r) => r.op === 'open');
  t.deepEqual(opens.map((r) => [r.code, r.count]).sort(), [['NOT_FOUND', 1], ['OK', 1]], JSON.stringify(opens));
});
