/**
 * The access policy: who (peer credentials) may open what (a verified device) and how
 * (access mode, exclusive). Pure TypeScript, no daemon state: the daemon loads a Policy at
 * start and on SIGHUP (swapping the reference only when loading succeeded) and calls
 * decide() twice per open — on the candidate device before anything is opened, and on the
 * verified device, whose decision is the one that counts. See docs/policy.md.
 */
import { closeSync, fstatSync, openSync, readSync, constants as fsConstants } from 'node:fs';
import { AccountResolver, type AccountFiles } from './accounts.js';
import { attributeKeysFor, decideOpen, mayEverAllow, peerMismatch, type SkipReason } from './decide.js';
import { lintRules, type PolicyWarning } from './lint.js';
import { parsePolicyText } from './parse-rules.js';
import { checkPolicyPath } from './policy-path.js';
import { PolicyError } from './policy-error.js';
import type { AccessMode } from '../../proto/contract.js';
import type { CompiledRule, Decision, DeviceFacts, OpenIntent, Peer, PeerSelector } from './types.js';

export { AccountResolver, DEFAULT_ACCOUNT_FILES, type Account, type AccountFiles } from './accounts.js';
export { compileGlob, GlobSyntaxError, type Glob } from './glob.js';
export { formatPolicyError, PolicyError } from './policy-error.js';
export { type PolicyWarning } from './lint.js';
export { type SkipReason } from './decide.js';
export { type CompiledRule, type Decision, type DeviceFacts, type OpenIntent, type Peer, type PeerSelector } from './types.js';

const NO_KEYS: ReadonlySet<string> = new Set();

/** Default policy file location. */
export const DEFAULT_POLICY_FILE = '/etc/diskseqd/policy.json';

/** A policy file larger than this is refused (it is a mistake, e.g. the wrong path). */
export const MAX_POLICY_FILE_BYTES = 1 << 20;

/** Options for loading a policy. */
export type PolicyLoadOptions = AccountFiles;

/** A complete, validated policy. Immutable; reloading makes a new one. */
export class Policy {
  /** Where the policy came from (file path, or 'built-in default'). */
  readonly source: string;
  /** Rule names in order, for the load log line. */
  readonly ruleNames: readonly string[];
  /** The sysfs attribute keys any rule references, so the daemon reads only those. */
  readonly attributeKeys: ReadonlySet<string>;
  /** Rules that load but can never take effect (see lint.ts), for the load log and --check-policy. */
  readonly warnings: readonly PolicyWarning[];
  /** The rules in order (read-only), for the policy dry run. */
  readonly rules: readonly CompiledRule[];
  private readonly statusViewers: readonly PeerSelector[];
  /** attributeKeysFor's answers by peer credentials (bounded: cleared when full). */
  private readonly keysByPeer = new Map<string, ReadonlySet<string>>();

  private constructor(rules: readonly CompiledRule[], source: string, statusViewers: readonly PeerSelector[] = []) {
    this.rules = Object.freeze([...rules]);
    this.statusViewers = Object.freeze([...statusViewers]);
    this.source = source;
    this.ruleNames = Object.freeze(rules.map((rule) => rule.name));
    this.attributeKeys = new Set(rules.flatMap((rule) => (rule.device.attributes ?? []).map(([key]) => key)));
    this.warnings = Object.freeze(lintRules(rules, source));
  }

  /** The policy in force when no file exists: uid 0 may do anything, everyone else is denied. */
  static builtinDefault(): Policy {
    return new Policy([], 'built-in default');
  }

  /**
   * Load and validate a policy file. Throws PolicyError on any problem: unreadable, not a
   * regular file, larger than MAX_POLICY_FILE_BYTES, writable by group or others or owned
   * by someone other than root (or this process's user), or invalid content.
   */
  static fromFile(path: string, options: PolicyLoadOptions = {}): Policy {
    return Policy.fromJSON(readPolicyFile(path), path, options);
  }

  /** Validate policy JSON text; `source` labels error messages (usually the file path). */
  static fromJSON(text: string, source: string, options: PolicyLoadOptions = {}): Policy {
    const { rules, statusViewers } = parsePolicyText(text, source, new AccountResolver(options));
    return new Policy(rules, source, statusViewers);
  }

  /**
   * The attribute keys decide() may read for this peer (a subset of attributeKeys; empty
   * for uid 0): what the open job must read so that the decision sees every one it needs.
   * The same peer gets the same set object back.
   */
  attributeKeysFor(peer: Peer): ReadonlySet<string> {
    if (peer.uid === 0) return NO_KEYS;
    const id = `${peer.uid}:${peer.gid}:${peer.groups.join(',')}`;
    let keys = this.keysByPeer.get(id);
    if (keys === undefined) {
      if (this.keysByPeer.size >= 1024) this.keysByPeer.clear();
      keys = attributeKeysFor(this.rules, peer);
      this.keysByPeer.set(id, keys);
    }
    return keys;
  }

  /**
   * Decide whether peer may open device with intent. uid 0 is always allowed (rule
   * 'root'); otherwise the first rule whose peer and device selectors match decides, and
   * no match is 'default-deny'. Reads only attributes in attributeKeys.
   */
  decide(peer: Peer, device: DeviceFacts, intent: OpenIntent): Decision {
    return decideOpen(this.rules, peer, device, intent);
  }

  /**
   * Whether `peer` may reopen a delivered fd of `device` (through /dev/fd/N) with
   * `access`: exactly when an exclusive open would be allowed, because a reopen can claim
   * the device with O_EXCL, which has no permission bit of its own (docs/policy.md,
   * "Exclusive opens and reopening"). Always true for root.
   */
  grantsReopen(peer: Peer, device: DeviceFacts, access: AccessMode): boolean {
    return this.decide(peer, device, { access, exclusive: true }).allowed;
  }

  /**
   * Whether `peer` sees the daemon's full status — every user's connection counts and the
   * device details of every waiting open — rather than the counts and its own share: root
   * always, anyone else only when an entry of the file's `status_viewers` matches it.
   */
  mayViewFullStatus(peer: Peer): boolean {
    return peer.uid === 0 || this.statusViewers.some((selector) => peerMismatch(selector, peer) === undefined);
  }

  /**
   * decide(), also reporting every rule passed over before the decision and why (the first
   * selector that did not match, or `loop_devices`): what the policy dry run prints.
   */
  explain(peer: Peer, device: DeviceFacts, intent: OpenIntent): { decision: Decision; skipped: Array<{ rule: CompiledRule; why: SkipReason }> } {
    const skipped: Array<{ rule: CompiledRule; why: SkipReason }> = [];
    const decision = decideOpen(this.rules, peer, device, intent, (rule, why) => skipped.push({ rule, why }));
    return { decision, skipped };
  }

  /**
   * Whether this policy could allow `peer` any device at all: root, or an allow rule
   * whose peer part matches (its device part aside). A peer that it could not is refused
   * a wait for a device that does not exist yet (docs/design.md, "Limits").
   */
  mayEverAllow(peer: Peer): boolean {
    return mayEverAllow(this.rules, peer);
  }
}

/** Read a policy file with the checks a root daemon owes its configuration. */
function readPolicyFile(path: string): string {
  const euid = process.geteuid?.() ?? 0;
  // Every directory and symlink on the way, as given (src/policy/policy-path.ts); the
  // physical path it returns has no symlink left, and O_NOFOLLOW keeps it that way.
  const physical = checkPolicyPath(path, euid);
  let fd: number;
  try {
    // Node opens with O_CLOEXEC. O_NONBLOCK: a FIFO at the path must not hang the daemon; fstat rejects it below.
    fd = openSync(physical, fsConstants.O_RDONLY | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW);
  } catch (error) {
    throw new PolicyError(path, `cannot open: ${(error as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new PolicyError(path, 'not a regular file');
    if (stat.size > MAX_POLICY_FILE_BYTES) {
      throw new PolicyError(path, `file is ${stat.size} bytes; at most ${MAX_POLICY_FILE_BYTES} are allowed`);
    }
    if (stat.uid !== 0 && stat.uid !== euid) {
      throw new PolicyError(path, `owned by uid ${stat.uid}; a policy file must be owned by root`);
    }
    if ((stat.mode & 0o022) !== 0) {
      throw new PolicyError(path, `mode ${(stat.mode & 0o7777).toString(8).padStart(4, '0')} lets others rewrite the policy; remove group and other write permission`);
    }
    // Read to EOF rather than trusting st_size, and stop one byte past the limit.
    const buffer = Buffer.alloc(MAX_POLICY_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > MAX_POLICY_FILE_BYTES) throw new PolicyError(path, `file is larger than ${MAX_POLICY_FILE_BYTES} bytes`);
    }
    return buffer.toString('utf8', 0, length);
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    throw new PolicyError(path, `cannot read: ${(error as Error).message}`);
  } finally {
    closeSync(fd);
  }
}
