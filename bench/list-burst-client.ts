/**
 * The burst of bench/list-burst.ts, in a process of its own: BURSTS times, CONNECTIONS
 * connections each send 16 List requests (include_partitions) and are all closed at once,
 * without reading anything, then a pause of PAUSE_MS. Prints one JSON line per burst
 * ({"burst": i, "sendMs": ...}) and {"done": true} at the end.
 *
 *   node dist/bench/list-burst-client.js SOCKET BURSTS CONNECTIONS PAUSE_MS
 */
import { native } from '../native/index.js';
import { encodeRequest } from '../testkit/fuzz-packets.js';
import Long from 'long';

const [socketPath, burstsText, connectionsText, pauseText] = process.argv.slice(2);
const list = (id: number): Buffer => encodeRequest({ id: Long.fromNumber(id, true), list: { includePartitions: true } });
const packets = Array.from({ length: 16 }, (_, i) => list(i + 1));

for (let burst = 0; burst < Number(burstsText); burst++) {
  const started = performance.now();
  const sockets: number[] = [];
  for (let c = 0; c < Number(connectionsText); c++) {
    const fd = native.connectSeqpacket(socketPath!, true);
    sockets.push(fd);
    for (const packet of packets) {
      try {
        if (!native.send(fd, packet, -1)) break;
      } catch {
        break;
      }
    }
  }
  for (const fd of sockets) native.close(fd);
  process.stdout.write(`${JSON.stringify({ burst, sendMs: performance.now() - started })}\n`);
  await new Promise((resolve) => setTimeout(resolve, Number(pauseText)));
}
process.stdout.write(`${JSON.stringify({ done: true })}\n`);
