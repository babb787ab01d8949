/** Loading a policy from a file: the checks a root daemon owes its configuration file. */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { MAX_POLICY_FILE_BYTES, Policy, PolicyError } from '../src/policy/index.js';
import { tempDir } from '../testkit/cleanup.js';
import { accountFiles } from './helpers/policy-fixtures.js';
import { cannotRun } from './helpers/ci.js';

const VALID = JSON.stringify({ rules: [{ name: 'alice', peer: { uids: ['alice'] } }] });

function policyFile(dir: string, content: string, mode = 0o644): string {
  const path = join(dir, 'policy.json');
  writeFileSync(path, content);
  chmodSync(path, mode); // explicit: do not depend on the umask
  return path;
}

test('file: a valid file loads, and errors name the file path', (t) => {
  const dir = tempDir(t);
  const path = policyFile(dir, VALID);
  const policy = Policy.fromFile(path, accountFiles(t));
  t.is(policy.source, path);
  t.deepEqual(policy.ruleNames, ['alice']);

  const bad = policyFile(dir, '{"rules":[{"name":"x","peer":{},"access":["rw"]}]}');
  const error = t.throws(() => Policy.fromFile(bad, accountFiles(t)), { instanceOf: PolicyError });
  t.is(error!.file, bad);
  t.true(error!.message.startsWith(`${bad}: rule "x": field "access[0]": `));
});

test('file: a missing file is a PolicyError naming it', (t) => {
  const path = join(tempDir(t), 'absent.json');
  const error = t.throws(() => Policy.fromFile(path), { instanceOf: PolicyError });
  t.is(error!.file, path);
  t.regex(error!.message, /: cannot open: ENOENT/);
});

test('file: a directory or a FIFO is refused without blocking', (t) => {
  const dir = tempDir(t);
  const sub = join(dir, 'dir.json');
  mkdirSync(sub);
  t.regex(t.throws(() => Policy.fromFile(sub), { instanceOf: PolicyError })!.message, /: not a regular file$/);
  const fifo = join(dir, 'fifo.json');
  execFileSync('mkfifo', ['-m', '0644', fifo]);
  t.regex(t.throws(() => Policy.fromFile(fifo), { instanceOf: PolicyError })!.message, /: not a regular file$/);
});

test('file: a file others can write is refused', (t) => {
  const dir = tempDir(t);
  for (const mode of [0o664, 0o646, 0o666]) {
    const path = policyFile(dir, VALID, mode);
    const error = t.throws(() => Policy.fromFile(path, accountFiles(t)), { instanceOf: PolicyError });
    t.regex(error!.problem, /^mode 0\d+ lets others rewrite the policy/, mode.toString(8));
  }
  t.notThrows(() => Policy.fromFile(policyFile(dir, VALID, 0o600), accountFiles(t)));
});

test('file: a file larger than the limit is refused', (t) => {
  const path = policyFile(tempDir(t), ' '.repeat(MAX_POLICY_FILE_BYTES + 1));
  t.regex(t.throws(() => Policy.fromFile(path), { instanceOf: PolicyError })!.problem, /bytes; at most 1048576 are allowed$/);
});

test('file: a file owned by another user is refused', (t) => {
  if (process.geteuid?.() !== 0) {
    cannotRun(t, 'chown needs root');
    return;
  }
  const path = policyFile(tempDir(t), VALID);
  chownSync(path, 65534, 65534);
  const error = t.throws(() => Policy.fromFile(path, accountFiles(t)), { instanceOf: PolicyError });
  t.is(error!.problem, 'owned by uid 65534; a policy file must be owned by root');
});

test('file: a directory on the way that others may write is refused, unless it is sticky', (t) => {
  const dir = tempDir(t);
  const open = join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const path = policyFile(open, VALID);
  const error = t.throws(() => Policy.fromFile(path, accountFiles(t)), { instanceOf: PolicyError });
  t.regex(error!.message, /directory .*\/open is writable by others \(mode 0777\), who could replace the policy$/);
  chmodSync(open, 0o1777); // sticky, as /tmp: others cannot replace root's files
  t.deepEqual(Policy.fromFile(path, accountFiles(t)).ruleNames, ['alice']);
});
