// 1,100 simultaneous connections against the default limit of 1,024 (the README's
// "Limits"): exactly 1,024 are served, the other 76 get one Error RESOURCE_EXHAUSTED and
// are closed; once a served client leaves, a new client is served normally, and the limit
// holds again.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { diskseqd } from '../proto/gen/diskseqd.js';
import { DaemonProcess, describeFootprint } from '../testkit/daemon.js';
import { encodeRequest } from '../testkit/fuzz-packets.js';
import { RawClient } from '../testkit/raw-client.js';
import { ask, outcomeOf, readAnswer, u64 } from './helpers/hostile-requests.js';
import { needsRoot } from './helpers/ci.js';

const LIMIT = 1024;
const CLIENTS = 1100;

/** This process's soft RLIMIT_NOFILE (Node raises it to the hard limit at startup). */
function openFileLimit(): number {
  const line = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return line === null || line[1] === 'unlimited' ? Infinity : Number(line[1]);
}

test('1,100 simultaneous connections: 1,024 served, 76 refused with RESOURCE_EXHAUSTED, then a new client is served', async (t) => {
  if (!needsRoot(t)) return; // the daemon needs root (its private-node directory in /dev)
  t.timeout(60_000);
  // Each client is one fd here; ava and the runtime need some more.
  const limit = openFileLimit();
  if (limit < CLIENTS + 200) {
    t.fail(`RLIMIT_NOFILE is ${limit}; this test needs ${CLIENTS + 200} (raise the hard limit: ulimit -Hn)`);
    return;
  }
  const daemon = await DaemonProcess.start({ capture: 'counts' }, t);
  const before = { fds: await daemon.stableFdCount(), rssBytes: daemon.rssBytes() };
  t.log(`daemon before: ${describeFootprint(before)}`);

  const clients: RawClient[] = [];
  t.teardown(() => {
    for (const c of clients) c.close();
  });
  // Connected one after another: the daemon accepts them in this order.
  for (let i = 0; i < CLIENTS; i++) clients.push(new RawClient(daemon.socketPath));
  const hello = (i: number): Buffer => encodeRequest({ id: u64(i + 1), hello: { protocolVersion: 1, clientName: `c${i}` } });
  const served: number[] = [];
  const refused: number[] = [];
  const other: string[] = [];
  await Promise.all(clients.map(async (client, i) => {
    // A refused client may find the socket closed already: EPIPE is part of the refusal.
    await client.send(hello(i));
    const first = await client.next(10_000);
    if (first === 'timeout' || first.kind !== 'packet') {
      other.push(`client ${i}: ${first === 'timeout' ? 'nothing within 10 s' : first.kind}`);
      return;
    }
    const response = diskseqd.v1.Response.decode(first.data);
    if (response.body === 'hello' && response.id.toString() === String(i + 1) && first.fds.length === 0) served.push(i);
    else if (outcomeOf(response) === 'RESOURCE_EXHAUSTED' && first.fds.length === 0) {
      const next = await client.next(10_000);
      if (next !== 'timeout' && next.kind !== 'packet') refused.push(i);
      else other.push(`client ${i}: refused but not closed`);
    } else other.push(`client ${i}: ${JSON.stringify(response.toJSON())}`);
  }));
  const peak = daemon.footprint();
  t.log(`daemon with ${served.length} clients: ${describeFootprint(peak)}`);
  t.deepEqual(other.slice(0, 10), [], `${other.length} clients got something else`);
  t.is(served.length, LIMIT);
  t.is(refused.length, CLIENTS - LIMIT);
  t.is(Math.min(...refused), LIMIT, 'the connections beyond the limit are the refused ones');
  t.is(peak.fds, before.fds + LIMIT, 'one fd per served connection, none for refused ones');
  t.is(await daemon.waitForCount('connection refused: limit reached', CLIENTS - LIMIT), CLIENTS - LIMIT);

  // One served client leaves: once the daemon has closed its side, a newcomer is served.
  clients[served[0]!]!.close();
  t.is(await daemon.settleFds(before.fds + LIMIT - 1), before.fds + LIMIT - 1);
  const newcomer = new RawClient(daemon.socketPath);
  clients.push(newcomer);
  const answer = await ask(newcomer, { id: u64(5000), hello: { protocolVersion: 1 } });
  t.is(outcomeOf(answer.response), 'hello', 'a new client is served once a slot is free');
  t.false(newcomer.isEnded);
  // ... and the limit holds again.
  const extra = new RawClient(daemon.socketPath);
  clients.push(extra);
  await extra.send(encodeRequest({ id: u64(5001), hello: { protocolVersion: 1 } }));
  t.is(outcomeOf((await readAnswer(extra)).response), 'RESOURCE_EXHAUSTED');

  for (const c of clients) c.close();
  const fds = await daemon.settleFds(before.fds);
  const after = daemon.footprint();
  t.log(`daemon after all closed: ${describeFootprint(after)}`);
  t.is(fds, before.fds, `fds leaked:\n${daemon.fdTargets().slice(0, 40).join('\n')}`);
  t.true(daemon.alive);
});
