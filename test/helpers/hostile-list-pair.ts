/**
 * Two Lists pipelined on one connection, for test/list-fairness.test.ts: started as root,
 * it drops to UID (gid UID, no groups) before it connects, sends List 1 and List 2 back to
 * back, reads every packet until both are complete and prints the ids of the packets in
 * the order they came (one connection's packets arrive in the order they were sent):
 *   {"order": [1, 1, 2, 1, ...]}
 *
 *   node dist/test/helpers/hostile-list-pair.js SOCKET UID
 */
import { RawClient } from '../../testkit/raw-client.js';
import { encodeRequest } from '../../testkit/fuzz-packets.js';
import { readAnswer, u64 } from './hostile-requests.js';

const [socketPath, uidText] = process.argv.slice(2);
const uid = Number(uidText);
process.setgroups!([]);
process.setgid!(uid);
process.setuid!(uid);

const client = new RawClient(socketPath!);
await client.send(encodeRequest({ id: u64(1), list: { includePartitions: true } }));
await client.send(encodeRequest({ id: u64(2), list: { includePartitions: true } }));
const order: number[] = [];
const done = new Set<number>();
while (done.size < 2) {
  const { response } = await readAnswer(client, 60_000);
  const id = Number(response.id.toString());
  if (response.body !== 'devices') throw new Error(`List ${id} answered ${response.body}`);
  order.push(id);
  if (response.devices?.more !== true) done.add(id);
}
client.close();
process.stdout.write(`${JSON.stringify({ order })}\n`);
