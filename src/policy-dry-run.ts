/**
 * The policy dry run (`diskseqd --check-policy FILE --uid ... --device ... --access ...`):
 * would this peer get this device, and by which rule? The device is looked up the way the
 * daemon looks it up — a registry scanned from this system's sysfs, so unbound loop
 * devices and partitions of loops without LO_FLAGS_PARTSCAN are absent as they are to the
 * daemon — and judged on the attributes the daemon's pre-authorisation reads, with the
 * same keys and parent-disk rules (src/opener.ts, deviceFacts). No device is opened.
 */
import { createLogger } from './log.js';
import type { DryRunQuestion } from './config.js';
import { deviceFacts, type Target } from './opener.js';
import { AccountResolver, type CompiledRule, type DeviceFacts, type Peer, type Policy, type SkipReason } from './policy/index.js';
import { Registry } from './registry.js';
import { Sysfs } from './sysfs.js';
import { readFromParent } from '../proto/attribute-keys.js';

/** The dry run's exit statuses (documented in --help and docs/policy.md). */
export const DRY_RUN_EXIT = { allowed: 0, invalidPolicy: 1, usage: 2, denied: 3, notServed: 4 } as const;

/** A dry run that cannot be asked as given (an unknown user, a device the daemon would not serve). */
export class DryRunProblem extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'DryRunProblem';
  }
}

/** What the dry run prints, and its exit status. */
export interface DryRunResult {
  status: number;
  text: string;
}

/** Runs the dry run of `question` against `policy`. Throws DryRunProblem (with its exit status). */
export function dryRun(policy: Policy, question: DryRunQuestion, sysfsRoot: string, accounts = new AccountResolver()): DryRunResult {
  const { peer, peerText } = resolvePeer(question, accounts);
  const sysfs = new Sysfs(sysfsRoot);
  const { target, where } = findDevice(sysfs, question);
  const read: Record<string, string> = {};
  const device = sysfs.deviceByName(target.node.name, target.part !== undefined);
  const attribute = (key: string): string | undefined => {
    const value = device.attribute(key);
    if (value !== undefined) read[key] = value;
    return value;
  };
  // No fd here: read-only as sysfs's `ro` says.
  const facts = deviceFacts(target, attribute, () => device.attribute('ro') === '1');
  const intent = { access: question.access, exclusive: question.exclusive };
  const { decision, skipped } = policy.explain(peer, facts, intent);
  const lines = [
    `peer:      ${peerText}`,
    `device:    ${where}`,
    `request:   ${question.access}${question.exclusive ? ', exclusive' : ''}`,
  ];
  if (peer.uid === 0) {
    lines.push('rules:     not consulted: uid 0 is always allowed (docs/policy.md, "How a decision is made")');
  } else {
    lines.push(`rules:     ${policy.rules.length} in ${policy.source}`);
    for (const { rule, why } of skipped) lines.push(`  rule ${JSON.stringify(rule.name)}: passed over: ${describeSkip(rule, why, peer, facts)}`);
    const decidingIndex = policy.rules.findIndex((rule) => rule.name === decision.rule);
    if (decidingIndex >= 0) {
      const later = policy.rules.length - decidingIndex - 1;
      lines.push(`  rule ${JSON.stringify(decision.rule)}: matches and decides${later > 0 ? ` (the ${later} rule${later === 1 ? '' : 's'} after it ${later === 1 ? 'is' : 'are'} not consulted)` : ''}`);
    } else {
      lines.push('  no rule matches: default deny');
    }
  }
  // What the rules read, as the daemon reads it: a partition's loop/*, dm/*, wwid, device/* are its disk's.
  const shown = Object.entries(read).map(([key, value]) =>
    `${key}=${JSON.stringify(value)}${target.part !== undefined && readFromParent(key) ? ` (of ${target.disk.name})` : ''}`);
  if (shown.length > 0) lines.push(`read:      ${shown.join(', ')}`);
  lines.push(`decision:  ${decision.allowed ? 'ALLOW' : 'DENY'} by ${decision.rule === 'root' || decision.rule === 'default-deny' ? decision.rule : `rule ${JSON.stringify(decision.rule)}`}: ${decision.reason}`);
  return { status: decision.allowed ? DRY_RUN_EXIT.allowed : DRY_RUN_EXIT.denied, text: `${lines.join('\n')}\n` };
}

/** The peer the question describes, filled in from the account files as a login would. */
function resolvePeer(question: DryRunQuestion, accounts: AccountResolver): { peer: Peer; peerText: string } {
  const uid = resolveId(question.uid, 'user', accounts);
  const account = accounts.accountOf(uid);
  let gid: number;
  let gidSource = '';
  if (question.gid !== undefined) {
    gid = resolveId(question.gid, 'group', accounts);
  } else if (account !== undefined) {
    gid = account.gid;
    gidSource = ` (primary group in ${accounts.passwdFile})`;
  } else {
    throw new DryRunProblem(DRY_RUN_EXIT.usage, `uid ${uid} is not in ${accounts.passwdFile}: give its group with --gid`);
  }
  let groups: number[];
  let groupsSource = '';
  if (question.groups !== undefined) {
    groups = question.groups.split(',').filter((g) => g !== '').map((g) => resolveId(g, 'group', accounts));
  } else {
    groups = account === undefined ? [] : accounts.supplementaryGroupsOf(account.name);
    groupsSource = account === undefined ? ' (none given)' : ` (of ${account.name} in ${accounts.groupFile})`;
  }
  const who = account === undefined ? `uid ${uid}` : `uid ${uid} (${account.name})`;
  return {
    peer: { uid, gid, pid: 0, groups },
    peerText: `${who}, gid ${gid}${gidSource}, groups ${groups.length === 0 ? 'none' : groups.join(',')}${groupsSource}`,
  };
}

function resolveId(text: string, kind: 'user' | 'group', accounts: AccountResolver): number {
  if (/^[0-9]{1,10}$/.test(text) && Number(text) <= 0xfffffffe) return Number(text);
  const id = kind === 'user' ? accounts.uid(text) : accounts.gid(text);
  if (id === undefined) throw new DryRunProblem(DRY_RUN_EXIT.usage, `unknown ${kind} ${JSON.stringify(text)} (not in ${kind === 'user' ? accounts.passwdFile : accounts.groupFile})`);
  return id;
}

/**
 * The device as the daemon's registry would index it now, or a DryRunProblem saying why
 * the daemon would not serve it (the NOT_FOUND it would answer).
 */
function findDevice(sysfs: Sysfs, question: DryRunQuestion): { target: Target; where: string } {
  const registry = new Registry(sysfs, createLogger('silent'));
  registry.scan();
  const { diskseq, partition } = question;
  const disk = registry.find(diskseq);
  if (disk === undefined) {
    const name = sysfs.listBlockDevices().find((n) => {
      const uevent = sysfs.readUevent(n);
      return uevent !== null && !uevent.isPartition && uevent.diskseq === diskseq;
    });
    const why = name === undefined
      ? `no disk has diskseq ${diskseq} (the highest on this system is ${registry.highestSeen})`
      : `diskseq ${diskseq} is ${name}, an unbound loop device (a diskseq left from its last detach): never served`;
    throw new DryRunProblem(DRY_RUN_EXIT.notServed, `${why}; the daemon would answer NOT_FOUND`);
  }
  const kind = disk.isLoop ? 'loop device' : `driver ${disk.driver}`;
  if (partition === 0) {
    return { target: { disk, part: undefined, node: disk }, where: `diskseq ${diskseq}: ${disk.name} (${disk.major}:${disk.minor}), whole disk, ${kind}` };
  }
  const part = disk.partitions.get(partition);
  if (part === undefined) {
    const why = disk.isLoop && !disk.partscan ? ' (loop device without LO_FLAGS_PARTSCAN: its partitions could outlive it, so they are never served)' : '';
    throw new DryRunProblem(DRY_RUN_EXIT.notServed, `diskseq ${diskseq} (${disk.name}) has no partition ${partition}${why}; the daemon would answer NOT_FOUND`);
  }
  return {
    target: { disk, part, node: part },
    where: `diskseq ${diskseq} partition ${partition}: ${part.name} (${part.major}:${part.minor}), partition of ${disk.name}, ${kind}`,
  };
}

/** One sentence for why `rule` was passed over. */
function describeSkip(rule: CompiledRule, why: SkipReason, peer: Peer, device: DeviceFacts): string {
  const d = rule.device;
  const list = (values: Iterable<number | string>): string => [...values].join(', ');
  switch (why) {
    case 'peer.uids':
      return `uid ${peer.uid} is not in peer.uids (${list(rule.peer.uids!)})`;
    case 'peer.gids':
      return `gid ${peer.gid} is not in peer.gids (${list(rule.peer.gids!)})`;
    case 'peer.groups':
      return `neither gid ${peer.gid} nor groups (${list(peer.groups) || 'none'}) are in peer.groups (${list(rule.peer.groups!)})`;
    case 'device.whole_disk':
      return `${device.name} is a whole disk and "whole_disk" is false`;
    case 'device.partitions':
      return `${device.name} is a partition and "partitions" is false`;
    case 'device.read_only':
      return `${device.name} is ${device.readOnly ? 'read-only' : 'writable'} (ro=${device.readOnly ? 1 : 0}) and "read_only" is ${d.readOnly}`;
    case 'device.drivers':
      return `driver ${device.driver} is not in device.drivers (${list(d.drivers!)})`;
    case 'device.names':
      return `${device.name} matches none of device.names (${d.names!.map((g) => JSON.stringify(g.source)).join(', ')})`;
    case 'device.attributes': {
      for (const [key, glob] of d.attributes!) {
        const value = device.attribute(key);
        if (value === undefined) return `${device.name} has no ${key} (an absent attribute matches no glob, not even "*")`;
        if (!glob.matches(value)) return `${key} is ${JSON.stringify(value)}, which does not match ${JSON.stringify(glob.source)}`;
      }
      return 'device.attributes does not match';
    }
    case 'loop_devices':
      return `matches, but ${device.name} is a loop device and the rule lacks "loop_devices": true`;
    default:
      return why;
  }
}
