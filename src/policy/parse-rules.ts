/**
 * Strict validation of a policy document into compiled rules. Every problem throws one
 * PolicyError naming the file, the rule and the field; nothing is returned unless the whole
 * document is valid, so a caller can never hold a half-read policy.
 */
import type { AccountResolver } from './accounts.js';
import { ACCESS_MODES, type AccessMode } from '../../proto/contract.js';
import { ATTRIBUTE_KEYS, isAttributeKey } from '../../proto/attribute-keys.js';
import { findDuplicateKey } from './duplicate-keys.js';
import { compileGlob, GlobSyntaxError, type Glob } from './glob.js';
import { PolicyError } from './policy-error.js';
import type { CompiledRule, PeerSelector } from './types.js';

/** More rules than this is a mistake (or an attack on load time), not a policy. */
export const MAX_RULES = 10_000;

const TOP_FIELDS = ['rules', 'comment', 'status_viewers'];
const RULE_FIELDS = ['name', 'comment', 'effect', 'peer', 'device', 'access', 'exclusive', 'loop_devices'];
const ALLOW_ONLY_FIELDS = ['access', 'exclusive', 'loop_devices'];
const PEER_FIELDS = ['uids', 'gids', 'groups'];
const DEVICE_FIELDS = ['drivers', 'names', 'attributes', 'whole_disk', 'partitions', 'read_only'];
const MAX_ID = 0xfffffffe; // (uid_t)-1 means "no id" to the kernel
const MAX_NAME_LENGTH = 128;
/** The rule names Decision uses when no rule decided; a rule must not be mistaken for them. */
const RESERVED_NAMES = ['root', 'default-deny'];

type JsonObject = Record<string, unknown>;

/** A validated policy document: its rules in order, and who may see the daemon's full status. */
export interface ParsedPolicy {
  rules: CompiledRule[];
  /** Peers (besides root) shown every user's numbers and the device details in a status reply. */
  statusViewers: PeerSelector[];
}

/** Parse and validate policy JSON text. `file` labels every message. */
export function parsePolicyText(text: string, file: string, accounts: AccountResolver): ParsedPolicy {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new PolicyError(file, `not valid JSON: ${(error as Error).message}`);
  }
  rejectDuplicateKeys(text, document, file);
  const top: Reader = new Reader(file, undefined, accounts);
  const object = top.object(document, undefined, TOP_FIELDS);
  if (object.comment !== undefined) top.string(object.comment, 'comment');
  if (!('rules' in object)) top.fail('rules', 'missing (the policy is {"rules": [...]})');
  const rules = object.rules;
  if (!Array.isArray(rules)) top.fail('rules', `wrong type: expected an array of rules, got ${describe(rules)}`);
  if (rules.length > MAX_RULES) top.fail('rules', `${rules.length} rules; at most ${MAX_RULES} are allowed`);

  let statusViewers: PeerSelector[] = [];
  if (object.status_viewers !== undefined) {
    const viewers = top.nonEmptyArray(object.status_viewers, 'status_viewers', 'peer selectors');
    statusViewers = viewers.map((viewer, i) => parsePeer(top, viewer, `status_viewers[${i}]`));
  }

  const firstIndexOfName = new Map<string, number>();
  const compiled = rules.map((value, index) => {
    const rule = parseRule(value, index, file, accounts, firstIndexOfName);
    firstIndexOfName.set(rule.name, index);
    return rule;
  });
  return { rules: compiled, statusViewers };
}

function rejectDuplicateKeys(text: string, document: unknown, file: string): void {
  const duplicate = findDuplicateKey(text);
  if (duplicate === undefined) return;
  const { path, key, line } = duplicate;
  let rule: string | undefined;
  let fieldPath = [...path, key];
  if (path[0] === 'rules' && typeof path[1] === 'number') {
    const index = path[1];
    const value = isObject(document) && Array.isArray(document.rules) ? document.rules[index] : undefined;
    const name = isObject(value) ? value.name : undefined;
    rule = typeof name === 'string' && name !== '' && !(path.length === 2 && key === 'name') ? name : `#${index}`;
    fieldPath = fieldPath.slice(2);
  }
  const field = fieldPath.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
  throw new PolicyError(file, `duplicate key ${JSON.stringify(key)} on line ${line} (JSON would silently keep only the last one)`, {
    rule,
    field,
  });
}

function parseRule(
  value: unknown,
  index: number,
  file: string,
  accounts: AccountResolver,
  firstIndexOfName: ReadonlyMap<string, number>,
): CompiledRule {
  // Until the name is known to be good, the rule is identified by its index.
  const byIndex: Reader = new Reader(file, `#${index}`, accounts);
  if (!isObject(value)) byIndex.fail(undefined, `wrong type: expected a rule object, got ${describe(value)}`);
  if (!('name' in value)) byIndex.fail('name', 'missing (every rule needs a name; it appears in the audit log)');
  const name = byIndex.string(value.name, 'name');
  if (name === '') byIndex.fail('name', 'empty rule name');
  if (name.length > MAX_NAME_LENGTH) byIndex.fail('name', `rule name longer than ${MAX_NAME_LENGTH} characters`);
  if (/[\p{Cc}]/u.test(name)) byIndex.fail('name', 'rule name contains a control character');
  if (RESERVED_NAMES.includes(name)) {
    byIndex.fail('name', `rule name ${JSON.stringify(name)} is reserved (audit lines use it for decisions no rule made)`);
  }
  const earlier = firstIndexOfName.get(name);
  if (earlier !== undefined) byIndex.fail('name', `duplicate rule name ${JSON.stringify(name)} (also rule #${earlier})`);

  const r: Reader = new Reader(file, name, accounts);
  r.object(value, undefined, RULE_FIELDS);
  if (value.comment !== undefined) r.string(value.comment, 'comment');

  let effect: 'allow' | 'deny' = 'allow';
  if (value.effect !== undefined) {
    const text = r.string(value.effect, 'effect');
    if (text !== 'allow' && text !== 'deny') r.fail('effect', `unknown effect ${JSON.stringify(text)} (expected allow or deny)`);
    effect = text;
  }
  if (effect === 'deny') {
    for (const field of ALLOW_ONLY_FIELDS) {
      if (field in value) {
        r.fail(field, 'only allowed in allow rules (a deny rule grants nothing, and applies to loop devices too)');
      }
    }
  } else if (!('peer' in value)) {
    r.fail('peer', 'missing: an allow rule must say which peers it is for (write "peer": {} to mean every local user)');
  }

  const peer = value.peer === undefined ? {} : parsePeer(r, value.peer);
  const device = value.device === undefined ? { wholeDisk: true, partitions: true } : parseDevice(r, value.device);
  const access = effect === 'allow' ? parseAccess(r, value.access) : new Set<AccessMode>();
  const exclusive = value.exclusive === undefined ? false : r.boolean(value.exclusive, 'exclusive');
  const loopDevices = value.loop_devices === undefined ? false : r.boolean(value.loop_devices, 'loop_devices');
  return { name, effect, peer, device, access, exclusive, loopDevices };
}

/** A peer selector: a rule's `peer`, or an entry of `status_viewers` (`field` says which). */
function parsePeer(r: Reader, value: unknown, field = 'peer'): PeerSelector {
  const peer = r.object(value, field, PEER_FIELDS);
  const result: { uids?: Set<number>; gids?: Set<number>; groups?: Set<number> } = {};
  if (peer.uids !== undefined) {
    result.uids = r.idList(peer.uids, `${field}.uids`, 'user');
    if (result.uids.has(0)) {
      r.fail(`${field}.uids`, 'uid 0 (root) is always allowed; rules never apply to it, so it must not be listed');
    }
  }
  if (peer.gids !== undefined) result.gids = r.idList(peer.gids, `${field}.gids`, 'group');
  if (peer.groups !== undefined) result.groups = r.idList(peer.groups, `${field}.groups`, 'group');
  return result;
}

function parseDevice(r: Reader, value: unknown): CompiledRule['device'] {
  const device = r.object(value, 'device', DEVICE_FIELDS);
  const result: {
    drivers?: Set<string>;
    names?: Glob[];
    attributes?: Array<readonly [string, Glob]>;
    wholeDisk: boolean;
    partitions: boolean;
    readOnly?: boolean;
  } = { wholeDisk: true, partitions: true };
  if (device.drivers !== undefined) {
    const drivers = r.nonEmptyArray(device.drivers, 'device.drivers', 'driver names');
    result.drivers = new Set(
      drivers.map((driver, i) => {
        const field = `device.drivers[${i}]`;
        const text = r.string(driver, field);
        if (!/^[\x21-\x7e]+$/.test(text)) r.fail(field, `invalid driver name ${JSON.stringify(text)} (a name from /proc/devices, e.g. loop, device-mapper, sd)`);
        return text;
      }),
    );
  }
  if (device.names !== undefined) {
    const names = r.nonEmptyArray(device.names, 'device.names', 'kernel name globs');
    result.names = names.map((glob, i) => r.glob(glob, `device.names[${i}]`));
  }
  if (device.attributes !== undefined) {
    const attributes = r.object(device.attributes, 'device.attributes');
    const keys = Object.keys(attributes);
    if (keys.length === 0) r.fail('device.attributes', 'empty object (omit the field to match any attributes)');
    result.attributes = keys.map((key) => {
      const field = `device.attributes.${key}`;
      if (!isAttributeKey(key)) {
        r.fail(field, `unknown attribute key ${JSON.stringify(key)} (expected one of ${ATTRIBUTE_KEYS.join(', ')})`);
      }
      return [key, r.glob(attributes[key], field)] as const;
    });
  }
  if (device.whole_disk !== undefined) result.wholeDisk = r.boolean(device.whole_disk, 'device.whole_disk');
  if (device.partitions !== undefined) result.partitions = r.boolean(device.partitions, 'device.partitions');
  if (!result.wholeDisk && !result.partitions) {
    r.fail('device', '"whole_disk" and "partitions" are both false, so the rule can never match');
  }
  if (device.read_only !== undefined) result.readOnly = r.boolean(device.read_only, 'device.read_only');
  return result;
}

function parseAccess(r: Reader, value: unknown): Set<AccessMode> {
  if (value === undefined) return new Set(['read-only']);
  const modes = r.nonEmptyArray(value, 'access', 'access modes');
  const result = new Set<AccessMode>();
  modes.forEach((mode, i) => {
    const field = `access[${i}]`;
    const text = r.string(mode, field);
    if (!(ACCESS_MODES as readonly string[]).includes(text)) {
      r.fail(field, `unknown access mode ${JSON.stringify(text)} (expected read-only, read-write or write-only)`);
    }
    if (result.has(text as AccessMode)) r.fail(field, `access mode ${JSON.stringify(text)} listed twice`);
    result.add(text as AccessMode);
  });
  return result;
}

/** Typed reads of JSON values, failing with a PolicyError located at one rule. */
class Reader {
  constructor(
    private readonly file: string,
    private readonly rule: string | undefined,
    private readonly accounts: AccountResolver,
  ) {}

  fail(field: string | undefined, problem: string): never {
    throw new PolicyError(this.file, problem, { rule: this.rule, field });
  }

  /** An object; with `allowed`, every key must be one of them. */
  object(value: unknown, field: string | undefined, allowed?: readonly string[]): JsonObject {
    if (!isObject(value)) this.fail(field, `wrong type: expected an object, got ${describe(value)}`);
    if (allowed) {
      for (const key of Object.keys(value)) {
        if (!allowed.includes(key)) {
          const at = field === undefined ? key : `${field}.${key}`;
          this.fail(at, `unknown field ${JSON.stringify(key)} (expected ${allowed.join(', ')})`);
        }
      }
    }
    return value;
  }

  string(value: unknown, field: string): string {
    if (typeof value !== 'string') this.fail(field, `wrong type: expected a string, got ${describe(value)}`);
    return value;
  }

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') this.fail(field, `wrong type: expected true or false, got ${describe(value)}`);
    return value;
  }

  nonEmptyArray(value: unknown, field: string, what: string): unknown[] {
    if (!Array.isArray(value)) this.fail(field, `wrong type: expected an array of ${what}, got ${describe(value)}`);
    if (value.length === 0) this.fail(field, 'empty list matches nothing (omit the field to match anything)');
    return value;
  }

  glob(value: unknown, field: string): Glob {
    const pattern = this.string(value, field);
    try {
      return compileGlob(pattern);
    } catch (error) {
      if (!(error instanceof GlobSyntaxError)) throw error;
      this.fail(field, `bad glob ${JSON.stringify(pattern)}: ${error.message}`);
    }
  }

  /** A list of numeric ids and account names, resolved to ids. */
  idList(value: unknown, field: string, kind: 'user' | 'group'): Set<number> {
    const entries = this.nonEmptyArray(value, field, `${kind} ids or names`);
    return new Set(entries.map((entry, i) => this.id(entry, `${field}[${i}]`, kind)));
  }

  private id(value: unknown, field: string, kind: 'user' | 'group'): number {
    if (typeof value === 'number') {
      if (!Number.isInteger(value) || value < 0 || value > MAX_ID) {
        this.fail(field, `invalid ${kind} id ${value} (expected an integer from 0 to ${MAX_ID})`);
      }
      return value;
    }
    if (typeof value !== 'string') {
      this.fail(field, `wrong type: expected a ${kind} id (number) or name (string), got ${describe(value)}`);
    }
    if (value === '') this.fail(field, `empty ${kind} name`);
    let id: number | undefined;
    try {
      id = kind === 'user' ? this.accounts.uid(value) : this.accounts.gid(value);
    } catch (error) {
      this.fail(field, `cannot resolve ${kind} name ${JSON.stringify(value)}: ${(error as Error).message}`);
    }
    if (id === undefined) {
      const source = kind === 'user' ? this.accounts.passwdFile : this.accounts.groupFile;
      const hint = /^[0-9]+$/.test(value) ? '; write numeric ids without quotes' : '';
      this.fail(field, `unknown ${kind} name ${JSON.stringify(value)} (not in ${source}${hint})`);
    }
    return id;
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `a string (${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)})`;
  if (typeof value === 'number') return `a number (${value})`;
  if (typeof value === 'boolean') return `${value}`;
  return typeof value;
}
