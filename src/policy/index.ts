// Temporary stand-in for the policy engine (replaced by the policy branch): the built-in
// default only — uid 0 may do anything, everyone else is denied.
export interface Peer { uid: number; gid: number; pid: number; groups: readonly number[] }
export type Access = 'read-only' | 'read-write' | 'write-only';
export interface DeviceFacts {
  name: string; partition: number; driver: string; isLoop: boolean; readOnly: boolean;
  attribute(key: string): string | undefined;
}
export interface OpenIntent { access: Access; exclusive: boolean }
export interface Decision { allowed: boolean; rule: string; reason: string }
export class Policy {
  readonly attributeKeys: ReadonlySet<string> = new Set();
  static builtinDefault(): Policy { return new Policy(); }
  decide(peer: Peer, _device: DeviceFacts, _intent: OpenIntent): Decision {
    return peer.uid === 0 ? { allowed: true, rule: 'root', reason: 'uid 0' } : { allowed: false, rule: 'default-deny', reason: 'no rule allows this peer' };
  }
}
