/**
 * Whether and where the daemon serves Varlink (docs/storage-provider.md, "The socket"):
 * socket-activated, only on the socket systemd passed (a unit under ProtectSystem=strict
 * cannot make one in /run itself); started by hand, on --varlink-socket; never with
 * --no-varlink.
 */
import type { Config } from '../config.js';
import type { ConnectionLimits } from '../connection.js';
import type { FairTurns } from '../fair-turns.js';
import type { Logger } from '../log.js';
import type { Opener } from '../opener.js';
import type { Quotas } from '../quotas.js';
import type { RequestTally } from '../request-tally.js';
import type { Registry } from '../registry.js';
import { socketPathOf, type InheritedSockets } from '../systemd/socket-activation.js';
import { VarlinkListener } from './listener.js';
import { MAX_MESSAGE_BYTES } from './message.js';
import { StorageProvider } from './storage-provider.js';

/** What the Varlink front-end shares with the SEQPACKET one. */
export interface SharedParts {
  opener: Opener;
  registry: Registry;
  log: Logger;
  serverVersion: string;
  /** The per-uid shares of both front-ends: connections, snapshots (src/quotas.ts). */
  quotas: Quotas;
  /** Where List, Watch and ListVolumes snapshots take their turns. */
  turns: FairTurns;
  /** Requests answered, over both front-ends. */
  tally: RequestTally;
  /** The per-connection bounds of the SEQPACKET connections, applied here too. */
  connectionLimits: ConnectionLimits;
}

/**
 * The Varlink listener to start with the server, or undefined when Varlink is off:
 * socket-activated without a Varlink socket. (With --no-varlink main does not load the
 * front-end at all, and closes a Varlink socket systemd passed anyway.)
 */
export function createVarlink(
  config: Config, inherited: InheritedSockets | null, shared: SharedParts, onActivity: () => void,
): VarlinkListener | undefined {
  const inheritedFd = inherited?.varlink;
  if (config.varlinkSocketPath === undefined) return undefined;
  if (inherited !== null && inheritedFd === undefined) return undefined;
  const socketPath = inheritedFd === undefined ? config.varlinkSocketPath : socketPathOf(inheritedFd) ?? config.varlinkSocketPath;
  const { maxInFlight, maxQueuedPackets, maxQueuedBytes, maxQueuedFds, stallTimeoutMs } = shared.connectionLimits;
  return new VarlinkListener(
    { socketPath, inheritedFd, socketMode: 0o666, backlog: 128, connections: shared.quotas.connections, tally: shared.tally },
    {
      provider: new StorageProvider(shared.opener, shared.registry, shared.turns), quotas: shared.quotas, log: shared.log, serverVersion: shared.serverVersion,
      limits: {
        maxMessageBytes: MAX_MESSAGE_BYTES, maxPendingCalls: maxInFlight, maxQueuedMessages: maxQueuedPackets,
        maxQueuedBytes, maxQueuedFds, stallTimeoutMs,
      },
    },
    onActivity,
  );
}
