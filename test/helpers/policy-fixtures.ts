/**
 * Shared fixtures for the policy unit tests: account files in a temp directory, and
 * builders for peers and device facts. No root, no devices: the policy module is pure.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import type { AccountFiles, DeviceFacts, Peer } from '../../src/policy/index.js';
import { tempDir } from '../../testkit/cleanup.js';

/** Users and groups the fixture account files define. */
export const UID = { alice: 1000, bob: 1001, backup: 34 } as const;
export const GID = { alice: 1000, bob: 1001, backup: 34, qubes: 990, disk: 6, staff: 50 } as const;

/** Write /etc/passwd- and /etc/group-style files with the fixture accounts. */
export function accountFiles(t: ExecutionContext): Required<AccountFiles> {
  const dir = tempDir(t, 'diskseqd-policy-');
  const passwdFile = join(dir, 'passwd');
  const groupFile = join(dir, 'group');
  writeFileSync(
    passwdFile,
    [
      'root:x:0:0:root:/root:/bin/sh',
      '# a comment line',
      'backup:x:34:34:backup:/var/backups:/usr/sbin/nologin',
      'alice:x:1000:1000::/home/alice:/bin/sh',
      'bob:x:1001:1001::/home/bob:/bin/sh',
      'alice:x:4242:4242:later duplicate, ignored:/:/bin/sh',
      'broken line without colons',
      '',
    ].join('\n'),
  );
  writeFileSync(
    groupFile,
    ['root:x:0:', 'disk:x:6:', 'backup:x:34:', 'staff:x:50:alice', 'qubes:x:990:alice', 'alice:x:1000:', 'bob:x:1001:', ''].join('\n'),
  );
  return { passwdFile, groupFile };
}

/** A peer; pid is irrelevant to policy. */
export function peer(uid: number, gid: number, groups: number[] = []): Peer {
  return { uid, gid, pid: 4321, groups };
}

/** Device facts with defaults for a plain, writable SCSI whole disk `sda`. */
export function device(facts: Partial<Omit<DeviceFacts, 'attribute'>> & { attributes?: Record<string, string> } = {}): DeviceFacts & {
  readonly reads: string[];
} {
  const { attributes = {}, ...rest } = facts;
  const reads: string[] = [];
  return {
    name: 'sda',
    partition: 0,
    driver: 'sd',
    isLoop: false,
    readOnly: false,
    ...rest,
    reads,
    attribute(key: string) {
      reads.push(key);
      return Object.hasOwn(attributes, key) ? attributes[key] : undefined;
    },
  };
}
