/**
 * The fuzz as a separate process, so a test can run it as an unprivileged user: prints the
 * FuzzStats of one run as a JSON line.
 *
 *   node dist/test/helpers/hostile-fuzz-peer.js SOCKET OWN_DISKSEQ FOREIGN_FLOOR PACKETS WORKERS SEED
 */
import { runFuzz } from '../../testkit/fuzz.js';

const [socketPath, own, floor, packets, workers, seed] = process.argv.slice(2);
const stats = await runFuzz({
  socketPath: socketPath!, target: { ownDiskseq: BigInt(own!), foreignFloor: BigInt(floor!) },
  packets: Number(packets), workers: Number(workers), seed: Number(seed),
});
process.stdout.write(`${JSON.stringify(stats)}\n`);
