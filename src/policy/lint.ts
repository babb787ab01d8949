/**
 * Rules that load but can never take effect: their device selector contradicts itself, or
 * it matches only loop devices in an allow rule without `"loop_devices": true` (a non-root
 * peer gets a loop device only from a rule that says so, and root never reaches the rules).
 * Such a rule is almost always a mistake, so `--check-policy` and the daemon's policy load
 * warn about it; it is not an error, because it grants nothing by being there.
 * (`whole_disk` and `partitions` both false is already an error at load.)
 */
import type { Glob } from './glob.js';
import { formatLocation } from './policy-error.js';
import type { CompiledRule } from './types.js';

/** One rule that can never take effect, and why. */
export interface PolicyWarning {
  rule: string;
  /** The selector that makes it so, e.g. `device.names`. */
  field: string;
  /** Why, without the location prefix. */
  problem: string;
  /** `FILE: rule "NAME": field "PATH": problem` */
  message: string;
}

/** Every warning for `rules` loaded from `file`, in rule order. */
export function lintRules(rules: readonly CompiledRule[], file: string): PolicyWarning[] {
  const warnings: PolicyWarning[] = [];
  for (const rule of rules) {
    const found = problemOf(rule);
    if (found === undefined) continue;
    const [field, problem] = found;
    warnings.push({ rule: rule.name, field, problem, message: formatLocation(file, rule.name, field) + problem });
  }
  return warnings;
}

/** A kernel name glob that only loop devices' names (loopN, loopNpM) can match. */
function loopName(glob: Glob): boolean {
  return glob.literalPrefix.startsWith('loop');
}

/** The first reason `rule` can never take effect, as [field, problem]; undefined when it can. */
function problemOf(rule: CompiledRule): [string, string] | undefined {
  const d = rule.device;
  const keys = (d.attributes ?? []).map(([key]) => key);
  const loopKey = keys.find((key) => key.startsWith('loop/'));
  const dmKey = keys.find((key) => key.startsWith('dm/'));
  const loopNames = d.names !== undefined && d.names.every(loopName);
  const drivers = d.drivers === undefined ? undefined : [...d.drivers];

  // Contradictions: no device can satisfy every selector at once.
  if (loopKey !== undefined && dmKey !== undefined) {
    return ['device.attributes', `needs both ${loopKey} and ${dmKey}: no device is a loop device and a device-mapper device, so the rule can never match`];
  }
  if (drivers !== undefined) {
    const needs = loopKey !== undefined ? ['loop', `attribute ${loopKey}`] : loopNames ? ['loop', 'a loop device name'] :
      dmKey !== undefined ? ['device-mapper', `attribute ${dmKey}`] : undefined;
    if (needs !== undefined && !drivers.includes(needs[0]!)) {
      return ['device.drivers', `${needs[1]} exists only on ${needs[0]} devices, which "drivers" (${drivers.join(', ')}) excludes, so the rule can never match`];
    }
  }
  if (loopNames && dmKey !== undefined) {
    return ['device.attributes', `${dmKey} exists only on device-mapper devices, and "names" match only loop devices, so the rule can never match`];
  }
  const partitionKey = keys.find((key) => key === 'partition' || key === 'start');
  if (partitionKey !== undefined && !d.partitions) {
    return ['device.attributes', `only partitions have ${partitionKey}, and "partitions" is false, so the rule can never match`];
  }
  const ro = d.attributes?.find(([key]) => key === 'ro')?.[1];
  if (ro !== undefined && d.readOnly !== undefined && !ro.matches(d.readOnly ? '1' : '0')) {
    return ['device.read_only', `"read_only": ${d.readOnly} means ro is ${d.readOnly ? '1' : '0'}, which the ro glob ${JSON.stringify(ro.source)} never matches, so the rule can never match`];
  }
  if (rule.effect === 'deny') return undefined; // deny rules apply to loop devices too

  // Allow rules that match only loop devices but do not grant them: always skipped.
  if (!rule.loopDevices) {
    const why = loopKey !== undefined ? ['device.attributes', `attribute ${loopKey} exists only on loop devices`] :
      loopNames ? ['device.names', `every name glob (${d.names!.map((g) => JSON.stringify(g.source)).join(', ')}) matches only loop devices`] :
      drivers !== undefined && drivers.every((driver) => driver === 'loop') ? ['device.drivers', 'it matches only loop devices'] : undefined;
    if (why !== undefined) {
      return [why[0]!, `${why[1]}, and without "loop_devices": true an allow rule never allows a loop device: the rule can never allow anything (add "loop_devices": true)`];
    }
  }
  // A grant the kernel makes useless: writes to a read-only block device fail (EPERM).
  if (d.readOnly === true && !rule.access.has('read-only')) {
    return ['access', `grants only ${[...rule.access].join(', ')}, but "read_only": true matches only read-only devices, where every write fails (EPERM): grant "read-only" instead`];
  }
  return undefined;
}
