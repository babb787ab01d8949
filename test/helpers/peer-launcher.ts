/**
 * Runs one program as an unprivileged peer without that peer ever reading the checkout.
 * Started as root, it imports the program (and with it the addon, the client library,
 * protobufjs ... everything the program's module graph loads), then becomes the peer
 * (become-peer.ts: groups, gid, uid, and a check that nothing of root is left), and only
 * then runs the program's main(), which connects: the daemon sees the peer's credentials.
 *
 *   node peer-launcher.js '{"uid":65534,"gid":65534,"groups":[]}' /path/to/program.js [ARG...]
 *
 * The program is a compiled module exporting `main(args: string[]): Promise<number | void>`
 * that does nothing when imported: test/helpers/peer-*.js, or dist/client/cli.js (whose
 * main is what bin/diskseq-open.js runs). The exit status is main's number (else 0), or 1
 * with the error on stderr when the import, the drop or main fails.
 */
import { pathToFileURL } from 'node:url';
import type { PeerIdentity } from '../../testkit/reachable.js';
import { becomePeer } from './become-peer.js';

/** What a peer program exports. */
export interface PeerProgram {
  main(args: string[]): Promise<number | void>;
}

const [identity, program, ...args] = process.argv.slice(2);
try {
  const loaded = (await import(pathToFileURL(program!).href)) as PeerProgram;
  becomePeer(JSON.parse(identity!) as PeerIdentity);
  const status = await loaded.main(args);
  process.exitCode = typeof status === 'number' ? status : 0;
} catch (error) {
  process.stderr.write(`peer-launcher: ${program}: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
}
