/** Types shared by the policy modules; index.ts re-exports the public ones. */
import type { AccessMode } from '../../proto/contract.js';
import type { Glob } from './glob.js';

/** Who is asking: from SO_PEERCRED and SO_PEERGROUPS at accept, never from a request. */
export interface Peer {
  uid: number;
  gid: number;
  pid: number;
  /** Supplementary group ids (SO_PEERGROUPS); may or may not include gid. */
  groups: readonly number[];
}

/** What the daemon knows about the device, pre-open (candidate) or post-verify. */
export interface DeviceFacts {
  /** Kernel name, e.g. loop3, loop3p1, dm-2. */
  name: string;
  /** 0 = whole disk. */
  partition: number;
  /** Name of the major in /proc/devices (loop, device-mapper, sd, virtblk); a partition's is its parent disk's. */
  driver: string;
  /** A loop disk or a partition of one. */
  isLoop: boolean;
  readOnly: boolean;
  /** An allow-listed sysfs attribute, trailing newline trimmed; undefined if the device lacks it. */
  attribute(key: string): string | undefined;
}

/** What the peer asks for. `direct`/`nonblock` are not policy: a holder can set them itself. */
export interface OpenIntent {
  access: AccessMode;
  exclusive: boolean;
}

/** The outcome of Policy.decide. */
export interface Decision {
  allowed: boolean;
  /** The deciding rule's name, or 'root' / 'default-deny'. */
  rule: string;
  /** One human-readable sentence for the audit line and the error message. */
  reason: string;
}

/** Which peers: every selector given must match (absent ones match every peer). */
export interface PeerSelector {
  readonly uids?: ReadonlySet<number>;
  readonly gids?: ReadonlySet<number>;
  /** The primary gid or any supplementary group. */
  readonly groups?: ReadonlySet<number>;
}

/** A validated rule, ready to match. Absent selectors match everything. */
export interface CompiledRule {
  readonly name: string;
  readonly effect: 'allow' | 'deny';
  readonly peer: PeerSelector;
  readonly device: {
    readonly drivers?: ReadonlySet<string>;
    readonly names?: readonly Glob[];
    readonly attributes?: ReadonlyArray<readonly [string, Glob]>;
    readonly wholeDisk: boolean;
    readonly partitions: boolean;
    readonly readOnly?: boolean;
  };
  /** Allow rules only; empty for deny rules. */
  readonly access: ReadonlySet<AccessMode>;
  readonly exclusive: boolean;
  readonly loopDevices: boolean;
}
