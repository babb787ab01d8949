// Devices the library hands out serialise with JSON.stringify — the library's own field
// names, 64-bit values as decimal strings (lossless beyond 2^53) — from list(), open() and
// watch events alike; and list() includes partitions unless told otherwise, as --list does.
import test from 'ava';
import { connect, deviceToJSON, type DeviceJSON } from '../client/index.js';
import { deviceFromWire } from '../client/device.js';
import { EventKind } from '../proto/contract.js';
import { FakeDaemon, wireDevice } from './helpers/fake-daemon.js';

const BIG = 18446744073709551615n;

test('JSON.stringify(device) gives DeviceJSON; toJSON is invisible to keys, spreads and deep comparisons', (t) => {
  const device = deviceFromWire(wireDevice(BIG, 2, { name: 'loop7p2', sizeBytes: undefined, attributes: { ro: '0' } }));
  const json = JSON.parse(JSON.stringify(device)) as DeviceJSON;
  t.deepEqual(json, {
    diskseq: '18446744073709551615', partition: 2, name: 'loop7p2', major: 7, minor: 0, sizeBytes: '0',
    readOnly: false, removable: false, driver: 'loop', attributes: { ro: '0' },
  });
  t.deepEqual(json, deviceToJSON(device));
  t.false(Object.keys(device).includes('toJSON'));
  const plain = {
    diskseq: BIG, partition: 2, name: 'loop7p2', major: 7, minor: 0, sizeBytes: 0n, readOnly: false, removable: false,
    driver: 'loop', attributes: { ro: '0' },
  };
  t.deepEqual({ ...device }, plain);
  t.deepEqual(device, plain);
});

test('list() asks for partitions by default, not with includePartitions: false; what it returns stringifies', async (t) => {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());

  const all = client.list();
  const request = await daemon.nextRequest();
  t.true(request.request.list?.includePartitions);
  daemon.respond(request, { devices: { devices: [wireDevice(BIG), wireDevice(BIG, 1)] } });
  const text = JSON.stringify(await all);
  t.deepEqual((JSON.parse(text) as DeviceJSON[]).map((d) => [d.diskseq, d.partition]), [['18446744073709551615', 0], ['18446744073709551615', 1]]);

  const disks = client.list({ includePartitions: false });
  const second = await daemon.nextRequest();
  t.false(second.request.list?.includePartitions ?? false);
  daemon.respond(second, { devices: { devices: [wireDevice(3n)] } });
  t.is((await disks).length, 1);
});

test('a watch event stringifies with its device in DeviceJSON form', async (t) => {
  const daemon = new FakeDaemon();
  t.teardown(() => daemon.close());
  const client = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => client.close());
  const watch = client.watch();
  const request = await daemon.nextRequest();
  daemon.respond(request, { event: { kind: EventKind.EVENT_KIND_ADDED, device: wireDevice(BIG) } });
  const { value } = await watch.next();
  watch.close();
  t.deepEqual(JSON.parse(JSON.stringify(value)), { kind: 'added', device: deviceToJSON(value!.device!) });
  t.is((JSON.parse(JSON.stringify(value)) as { device: DeviceJSON }).device.diskseq, '18446744073709551615');
});
