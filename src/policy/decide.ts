/**
 * The decision: root first, then the rules in order, first match decides, default deny.
 * Pure: no I/O besides the attribute callback the caller supplies.
 */
import type { CompiledRule, Decision, DeviceFacts, OpenIntent, Peer, PeerSelector } from './types.js';

/**
 * Why a rule was passed over: the first selector that did not match (`peer.uids`,
 * `device.names`, `device.attributes`, ...), or `loop_devices` for an allow rule that
 * matched a loop device without granting loop devices. The dry run turns it into a sentence.
 */
export type SkipReason = string;

/**
 * Decide one open against compiled rules. `onSkip`, when given, hears every rule passed
 * over before the decision, in order (for the policy dry run; the daemon passes none).
 */
export function decideOpen(rules: readonly CompiledRule[], peer: Peer, device: DeviceFacts, intent: OpenIntent,
  onSkip?: (rule: CompiledRule, why: SkipReason) => void): Decision {
  if (peer.uid === 0) {
    // Root can mknod and open any device node itself; refusing it here would protect
    // nothing. The policy file cannot change this.
    return { allowed: true, rule: 'root', reason: 'uid 0 is always allowed' };
  }
  let skippedForLoop: string | undefined;
  for (const rule of rules) {
    const mismatch = peerMismatch(rule.peer, peer) ?? deviceMismatch(rule, device);
    if (mismatch !== undefined) {
      onSkip?.(rule, mismatch);
      continue;
    }
    if (rule.effect === 'deny') {
      return { allowed: false, rule: rule.name, reason: `rule ${JSON.stringify(rule.name)} denies ${device.name}` };
    }
    // A loop fd lets any holder detach the device (LOOP_CLR_FD needs no privilege), so
    // an allow rule hands out loop devices only when it says so explicitly.
    if (device.isLoop && !rule.loopDevices) {
      skippedForLoop ??= rule.name;
      onSkip?.(rule, 'loop_devices');
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

/** The first field of `selector` that `peer` fails (`peer.uids` ...), or undefined when all match. */
export function peerMismatch(selector: PeerSelector, peer: Peer): SkipReason | undefined {
  const { uids, gids, groups } = selector;
  if (uids && !uids.has(peer.uid)) return 'peer.uids';
  if (gids && !gids.has(peer.gid)) return 'peer.gids';
  if (groups && !groups.has(peer.gid) && !peer.groups.some((g) => groups.has(g))) return 'peer.groups';
  return undefined;
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
    if (peerMismatch(rule.peer, peer) === undefined) for (const [key] of rule.device.attributes ?? []) keys.add(key);
  }
  return keys;
}

/**
 * Whether any device could ever be allowed to `peer`: root, or some allow rule's peer part
 * matches it. Judged on the peer alone, for requests whose device may not exist yet.
 */
export function mayEverAllow(rules: readonly CompiledRule[], peer: Peer): boolean {
  return peer.uid === 0 || rules.some((rule) => rule.effect === 'allow' && peerMismatch(rule.peer, peer) === undefined);
}

/** The first device selector of `rule` that `device` fails, or undefined when all match. */
function deviceMismatch(rule: CompiledRule, device: DeviceFacts): SkipReason | undefined {
  const d = rule.device;
  if (device.partition === 0 ? !d.wholeDisk : !d.partitions) return device.partition === 0 ? 'device.whole_disk' : 'device.partitions';
  if (d.readOnly !== undefined && d.readOnly !== device.readOnly) return 'device.read_only';
  if (d.drivers && !d.drivers.has(device.driver)) return 'device.drivers';
  if (d.names && !d.names.some((glob) => glob.matches(device.name))) return 'device.names';
  if (d.attributes) {
    for (const [key, glob] of d.attributes) {
      // An attribute the device lacks never matches, not even "*".
      const value = device.attribute(key);
      if (value === undefined || !glob.matches(value)) return 'device.attributes';
    }
  }
  return undefined;
}
