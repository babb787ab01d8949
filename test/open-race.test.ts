// The race the daemon exists to close: devices are re-attached under the clients' feet,
// and still every delivered fd is the instance that was asked for — or the request fails
// with NOT_FOUND/STALE. Never a wrong device.
import test from 'ava';
import { native } from '../native/index.js';
import { readMarker } from '../testkit/image.js';
import type { WireClient } from '../testkit/wire-client.js';
import { startBroker } from './helpers/broker.js';
import { Churner, type AttachRecord } from './helpers/churner.js';
import { needsRoot } from './helpers/ci.js';

const LOOPS = 3;
const CLIENTS = 4;
const PIPELINE = 4;
const OPENS = 6000;
/** Keep opening past OPENS until the churner has re-attached this often (at most MAX_OPENS). */
const MIN_ATTACHES = 100;
const MAX_OPENS = 60_000;

interface Delivery {
  requested: bigint;
  fdDiskseq: bigint | null;
  deviceDiskseq: bigint;
  marker: string;
}

test('race: opens during constant re-attach deliver only the requested instance', async (t) => {
  if (!needsRoot(t)) return;
  const { connect } = await startBroker(t);
  const churner = await Churner.start(LOOPS, t);

  const deliveries: Delivery[] = [];
  const refusals = new Map<string, number>();
  let issued = 0;

  /** A recent diskseq: mostly the newest of a random slot, sometimes one just replaced. */
  const pick = (): AttachRecord => {
    const list = churner.recent[Math.floor(Math.random() * LOOPS)]!;
    const back = Math.random() < 0.8 ? 1 : 2 + Math.floor(Math.random() * Math.min(3, list.length - 1));
    return list[Math.max(0, list.length - back)]!;
  };

  const worker = async (client: WireClient): Promise<void> => {
    while ((issued < OPENS || churner.byDiskseq.size < MIN_ATTACHES) && issued < MAX_OPENS) {
      issued++;
      const target = pick();
      const outcome = await client.open({ diskseq: target.diskseq });
      if (!outcome.ok) {
        refusals.set(outcome.code, (refusals.get(outcome.code) ?? 0) + 1);
        continue;
      }
      try {
        // Read through the fd before closing it: it pins the binding meanwhile.
        deliveries.push({
          requested: target.diskseq,
          fdDiskseq: native.probeFdSync(outcome.fd).diskseq,
          deviceDiskseq: outcome.device.diskseq,
          marker: readMarker(outcome.fd, 0),
        });
      } finally {
        native.close(outcome.fd);
      }
    }
  };

  const clients = Array.from({ length: CLIENTS }, () => connect());
  await Promise.all(clients.flatMap((c) => Array.from({ length: PIPELINE }, () => worker(c))));
  const summary = await churner.stop();

  t.deepEqual(churner.errors, [], 'the churner ran cleanly');
  const wrong = deliveries.filter((d) => {
    const expected = churner.byDiskseq.get(d.requested.toString());
    return !expected || d.marker !== expected.marker || d.fdDiskseq !== d.requested || d.deviceDiskseq !== d.requested;
  });
  const unexpectedCodes = [...refusals.keys()].filter((code) => code !== 'NOT_FOUND' && code !== 'STALE');
  t.log(`opens issued: ${issued}; delivered: ${deliveries.length}; refused: ${JSON.stringify(Object.fromEntries(refusals))}; churner: ${JSON.stringify(summary)}`);

  t.true(issued >= 5000);
  t.is(wrong.length, 0, `wrong devices delivered, e.g. ${JSON.stringify(wrong.slice(0, 3), (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
  t.deepEqual(unexpectedCodes, [], 'every refusal is NOT_FOUND or STALE');
  t.true(deliveries.length >= 100, `a non-trivial number of deliveries (got ${deliveries.length})`);
  t.true(summary.attaches >= MIN_ATTACHES, `the churner kept re-attaching (${summary.attaches} attaches)`);
});
