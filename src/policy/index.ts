/**
 * The access policy: who (peer credentials) may open what (a verified device) and how
 * (access mode, exclusive). Pure TypeScript, no daemon state: the daemon loads a Policy at
 * start and on SIGHUP (swapping the reference only when loading succeeded) and calls
 * decide() twice per open — on the candidate device before anything is opened, and on the
 * verified device, whose decision is the one that counts. See docs/policy.md.
 */
import { closeSync, fstatSync, openSync, readSync, realpathSync, statSync, constants as fsConstants } from 'node:fs';
import { dirname } from 'node:path';
import { AccountResolver, type AccountFiles } from './accounts.js';
import { attributeKeysFor, decideOpen } from './decide.js';
import { parsePolicyText } from './parse-rules.js';
import { PolicyError } from './policy-error.js';
import type { CompiledRule, Decision, DeviceFacts, OpenIntent, Peer } from './types.js';

export { DEFAULT_ACCOUNT_FILES, type AccountFiles } from './accounts.js';
export { compileGlob, GlobSyntaxError, type Glob } from './glob.js';
export { formatPolicyError, PolicyError } from './policy-error.js';
export { type Decision, type DeviceFacts, type OpenIntent, type Peer } from './types.js';

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
  private readonly rules: readonly CompiledRule[];
  /** attributeKeysFor's answers by peer credentials (bounded: cleared when full). */
  private readonly keysByPeer = new Map<string, ReadonlySet<string>>();

  private constructor(rules: readonly CompiledRule[], source: string) {
    this.rules = Object.freeze([...rules]);
    this.source = source;
    this.ruleNames = Object.freeze(rules.map((rule) => rule.name));
    this.attributeKeys = new Set(rules.flatMap((rule) => (rule.device.attributes ?? []).map(([key]) => key)));
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
    return new Policy(parsePolicyText(text, source, new AccountResolver(options)), source);
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
}

/** Read a policy file with the checks a root daemon owes its configuration. */
function readPolicyFile(path: string): string {
  let fd: number;
  try {
    // Node opens with O_CLOEXEC. O_NONBLOCK: a FIFO at the path must not hang the daemon; fstat rejects it below.
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
  } catch (error) {
    throw new PolicyError(path, `cannot open: ${(error as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new PolicyError(path, 'not a regular file');
    if (stat.size > MAX_POLICY_FILE_BYTES) {
      throw new PolicyError(path, `file is ${stat.size} bytes; at most ${MAX_POLICY_FILE_BYTES} are allowed`);
    }
    const euid = process.geteuid?.() ?? 0;
    if (stat.uid !== 0 && stat.uid !== euid) {
      throw new PolicyError(path, `owned by uid ${stat.uid}; a policy file must be owned by root`);
    }
    if ((stat.mode & 0o022) !== 0) {
      throw new PolicyError(path, `mode ${(stat.mode & 0o7777).toString(8).padStart(4, '0')} lets others rewrite the policy; remove group and other write permission`);
    }
    checkDirectories(path, euid);
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

/**
 * Whoever may write a directory on the way to the policy file may replace the file (or a
 * directory) with one of their own: every directory of the resolved path must belong to
 * root (or the daemon's user) and not be writable by group or others, unless it is sticky
 * (/tmp: others cannot rename or remove root's entries there).
 */
function checkDirectories(path: string, euid: number): void {
  let dir = dirname(realpathSync(path));
  for (;;) {
    const stat = statSync(dir);
    if (stat.uid !== 0 && stat.uid !== euid) throw new PolicyError(path, `directory ${dir} is owned by uid ${stat.uid}; it must be owned by root`);
    if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) {
      throw new PolicyError(path, `directory ${dir} is writable by others (mode ${(stat.mode & 0o7777).toString(8).padStart(4, '0')}), who could replace the policy`);
    }
    const parent = dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}
