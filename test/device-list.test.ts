// Listing: a DeviceList too big for one packet arrives split over several responses with
// the request's id (more = true on all but the last), and the client library joins them.
// Thousands of disks come from a synthetic sysfs tree (the sysfs root is a parameter).
import test from 'ava';
import { connect } from '../client/index.js';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { createSyntheticSysfs } from '../testkit/synthetic-sysfs.js';
import { expectOpened, startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';

const DISKS = 1500;

test('a list too large for one packet is split, same id, more on all but the last, nothing lost or doubled', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const sysfs = createSyntheticSysfs({ count: DISKS, linked: [loop.name] }, t);
  const { client, daemon } = await startBroker(t, { sysfsRoot: sysfs.root });

  const responses = await client.listResponses(false);
  t.true(responses.length >= 2, `split over ${responses.length} packets`);
  t.log(`${DISKS + 1} disks came in ${responses.length} packets`);
  const ids = new Set(responses.map((r) => r.id.toString()));
  t.is(ids.size, 1, 'every part carries the request id');
  t.deepEqual(responses.map((r) => r.devices?.more ?? false), responses.map((_, i) => i < responses.length - 1));

  const names = responses.flatMap((r) => (r.devices?.devices ?? []).map((d) => d.name ?? ''));
  t.is(new Set(names).size, names.length, 'no device twice');
  t.is(names.length, DISKS + 1);
  t.true(names.includes(loop.name));
  t.true(names.includes(`synth${DISKS - 1}`));

  // The client library joins the parts.
  const library = await connect({ socketPath: daemon.socketPath });
  t.teardown(() => library.close());
  const joined = await library.list();
  t.is(joined.length, DISKS + 1);
  t.is(joined.find((d) => d.name === 'synth7')?.diskseq, sysfs.disks[7]!.diskseq);

  // The real loop device is still served through the synthetic root.
  const { fd } = expectOpened(t, await client.open({ diskseq: loop.diskseq }), 'the real loop');
  t.is(native.probeFdSync(fd).diskseq, loop.diskseq);
  t.is(readMarker(fd, 0), loop.image.diskMarker);
});
