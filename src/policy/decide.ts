/**
 * The decision: root first, then the rules in order, first match decides, default deny.
 * Pure: no I/O besides the attribute callback the caller supplies.
 */
import type { CompiledRule, Decision, DeviceFacts, OpenIntent, Peer } from './types.js';

/** Decide one open against compiled rules. */
export function decideOpen(rules: readonly CompiledRule[], peer: Peer, device: DeviceFacts, intent: OpenIntent): Decision {
  if (peer.uid === 0) {
    // Root can mknod and open any device node itself; refusing it here would protect
    // nothing. The policy file cannot change this.
    return { allowed: true, rule: 'root', reason: 'uid 0 is always allowed' };
  }
  let skippedForLoop: string | undefined;
  for (const rule of rules) {
    if (!peerMatches(rule, peer) || !deviceMatches(rule, device)) continue;
    if (rule.effect === 'deny') {
      return { allowed: false, rule: rule.name, reason: `rule ${JSON.stringify(rule.name)} denies ${device.name}` };
    }
    // A loop fd lets any holder detach the device (LOOP_CLR_FD needs no privilege), so
    // an allow rule hands out loop devices only when it says so explicitly.
    if (device.isLoop && !rule.loopDevices) {
      skippedForLoop ??= rule.name;
      continue;
    }
    if (!rule.access.has(intent.access)) {
      const granted = [...rule.access].join(', ');
      return {
        allowed: false,
        rule: rule.name,
        reason: `rule ${JSON.stringify(rule.name)} grants ${granted} on ${device.name}, not ${intent.access}`,
      };
    }
    if (intent.exclusive && !rule.exclusive) {
      return {
        allowed: false,
        rule: rule.name,
        reason: `rule ${JSON.stringify(rule.name)} does not grant exclusive opens of ${device.name}`,
      };
    }
    return {
      allowed: true,
      rule: rule.name,
      reason: `rule ${JSON.stringify(rule.name)} grants ${intent.access}${intent.exclusive ? ', exclusive' : ''} on ${device.name}`,
    };
  }
  const hint =
    skippedForLoop === undefined
      ? ''
      : ` (rule ${JSON.stringify(skippedForLoop)} matched but does not allow loop devices: it lacks "loop_devices": true)`;
  return { allowed: false, rule: 'default-deny', reason: `no rule allows uid ${peer.uid} to open ${device.name}${hint}` };
}

/**
 * The attribute keys decideOpen may read for this peer: those of the rules whose peer part
 * matches it (the others are skipped before their device part is looked at); none for uid
 * 0, which no rule is consulted for.
 */
export function attributeKeysFor(rules: readonly CompiledRule[], peer: Peer): Set<string> {
  const keys = new Set<string>();
  if (peer.uid === 0) return keys;
  for (const rule of rules) {
    if (peerMatches(rule, peer)) for (const [key] of rule.device.attributes ?? []) keys.add(key);
  }
  return keys;
}

function peerMatches(rule: CompiledRule, peer: Peer): boolean {
  const { uids, gids, groups } = rule.peer;
  if (uids && !uids.has(peer.uid)) return false;
  if (gids && !gids.has(peer.gid)) return false;
  if (groups && !groups.has(peer.gid) && !peer.groups.some((g) => groups.has(g))) return false;
  return true;
}

function deviceMatches(rule: CompiledRule, device: DeviceFacts): boolean {
  const d = rule.device;
  if (device.partition === 0 ? !d.wholeDisk : !d.partitions) return false;
  if (d.readOnly !== undefined && d.readOnly !== device.readOnly) return false;
  if (d.drivers && !d.drivers.has(device.driver)) return false;
  if (d.names && !d.names.some((glob) => glob.matches(device.name))) return false;
  if (d.attributes) {
    for (const [key, glob] of d.attributes) {
      // An attribute the device lacks never matches, not even "*".
      const value = device.attribute(key);
      if (value === undefined || !glob.matches(value)) return false;
    }
  }
  return true;
}
