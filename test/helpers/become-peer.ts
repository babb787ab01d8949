/**
 * How a test process stops being root and becomes an unprivileged peer: supplementary
 * groups, then gid, then uid (each later step needs the privilege the earlier ones still
 * had), then a check in /proc/self/status that every uid and gid is the peer's, the groups
 * are exactly its own, and no capability is left.
 *
 * The daemon takes the peer's credentials (SO_PEERCRED, SO_PEERGROUPS) when it connects,
 * so a peer calls this after it has loaded everything it needs from the checkout — which
 * the peer's user may be unable to read, under a 0700 directory such as /root — and before
 * its first connect. test/helpers/peer-launcher.ts does exactly that for every peer program.
 */
import { readFileSync } from 'node:fs';
import type { PeerIdentity } from '../../testkit/reachable.js';

/** Drops this process to `who`; throws when anything of the old identity is left. */
export function becomePeer(who: PeerIdentity): void {
  const groups = [...new Set(who.groups ?? [])].sort((a, b) => a - b);
  process.setgroups!(groups);
  process.setgid!(who.gid);
  process.setuid!(who.uid);
  const left = leftOver(who, groups);
  if (left !== undefined) throw new Error(`after dropping to uid ${who.uid}, gid ${who.gid}, groups [${groups.join(',')}] this process still has ${left}`);
}

/** What /proc/self/status says differs from `who`, or undefined. */
function leftOver(who: PeerIdentity, groups: number[]): string | undefined {
  const status = readFileSync('/proc/self/status', 'utf8');
  const field = (name: string): string[] => (new RegExp(`^${name}:[ \\t]*([^\\n]*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).filter((v) => v !== '');
  const uids = field('Uid');
  if (uids.length !== 4 || uids.some((u) => Number(u) !== who.uid)) return `Uid: ${uids.join(' ')}`;
  const gids = field('Gid');
  if (gids.length !== 4 || gids.some((g) => Number(g) !== who.gid)) return `Gid: ${gids.join(' ')}`;
  const supplementary = field('Groups').map(Number).sort((a, b) => a - b);
  if (supplementary.join(',') !== groups.join(',')) return `Groups: ${supplementary.join(' ')}`;
  if (who.uid !== 0) {
    for (const set of ['CapPrm', 'CapEff', 'CapAmb']) {
      const value = field(set)[0] ?? '';
      if (!/^0+$/.test(value)) return `${set}: ${value}`;
    }
  }
  return undefined;
}
