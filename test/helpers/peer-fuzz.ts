/**
 * The fuzz as a peer program, so a test can run it as an unprivileged user (through
 * peer-launcher.js): prints the FuzzStats of one run as a JSON line.
 *
 *   node peer-launcher.js IDENTITY peer-fuzz.js SOCKET OWN_DISKSEQ FOREIGN_FLOOR PACKETS WORKERS SEED
 */
import { runFuzz } from '../../testkit/fuzz.js';

/** The program (see the module comment). */
export async function main(args: string[]): Promise<number> {
  const [socketPath, own, floor, packets, workers, seed] = args;
  const stats = await runFuzz({
    socketPath: socketPath!, target: { ownDiskseq: BigInt(own!), foreignFloor: BigInt(floor!) },
    packets: Number(packets), workers: Number(workers), seed: Number(seed),
  });
  process.stdout.write(`${JSON.stringify(stats)}\n`);
  return 0;
}
