/**
 * The policy file's path is checked as given, component by component: a directory or a
 * symlink on the way that someone other than root controls decides which file the daemon
 * reads (src/policy/policy-path.ts). The reproduction: DIR owned by nobody holds
 * policy.json -> a root-owned 0644 policy; nobody can retarget that link at will, so the
 * daemon must refuse it — a check of the *resolved* path alone accepted it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Policy, PolicyError } from '../src/policy/index.js';
import { daemonArgv } from '../testkit/repo.js';
import { needsRoot } from './helpers/ci.js';
import { tempDir } from '../testkit/cleanup.js';
import { accountFiles } from './helpers/policy-fixtures.js';

const NOBODY = 65534;
const VALID = JSON.stringify({ rules: [{ name: 'alice', peer: { uids: [1000] } }] }); // numeric: --check-policy reads the system's accounts

/** A root-owned 0755 directory with a valid root-owned 0644 policy in it. */
function realPolicy(t: ExecutionContext): string {
  const dir = join(tempDir(t), 'etc');
  mkdirSync(dir, { mode: 0o755 });
  const path = join(dir, 'policy.json');
  writeFileSync(path, VALID);
  chmodSync(path, 0o644);
  return path;
}

/** A directory owned by nobody (mode 0755: only nobody may change what is in it). */
function nobodysDirectory(t: ExecutionContext): string {
  const dir = join(tempDir(t), 'nobodys');
  mkdirSync(dir, { mode: 0o755 });
  chownSync(dir, NOBODY, NOBODY);
  return dir;
}

function refusal(t: ExecutionContext, path: string): string {
  return t.throws(() => Policy.fromFile(path, accountFiles(t)), { instanceOf: PolicyError })!.message;
}

test('path: a symlink in a directory owned by nobody is refused, by the loader and by --check-policy', (t) => {
  if (!needsRoot(t)) return;
  const target = realPolicy(t);
  t.deepEqual(Policy.fromFile(target, accountFiles(t)).ruleNames, ['alice'], 'the target itself is a valid policy');
  const dir = nobodysDirectory(t);
  const link = join(dir, 'policy.json');
  symlinkSync(target, link);
  lchownSync(link, 0, 0); // even a root-owned link: nobody could replace it at will

  t.regex(refusal(t, link), new RegExp(`^${link}: directory ${dir} is owned by uid ${NOBODY}; it must be owned by root$`));
  const [node, ...argv] = daemonArgv('--check-policy', link);
  const check = spawnSync(node!, argv, { encoding: 'utf8' });
  t.is(check.status, 1, `--check-policy must refuse it: ${check.stdout}${check.stderr}`);
  t.regex(check.stderr, new RegExp(`directory ${dir} is owned by uid ${NOBODY}`));
  // Control: the same check accepts the target named directly.
  const direct = spawnSync(node!, daemonArgv('--check-policy', target).slice(1), { encoding: 'utf8' });
  t.is(direct.status, 0, direct.stderr);
});

test('path: a symlink owned by nobody is refused even in a root-owned directory', (t) => {
  if (!needsRoot(t)) return;
  const target = realPolicy(t);
  const dir = join(tempDir(t), 'conf');
  mkdirSync(dir, { mode: 0o755 });
  const link = join(dir, 'policy.json');
  symlinkSync(target, link);
  lchownSync(link, NOBODY, NOBODY);
  t.regex(refusal(t, link), new RegExp(`symlink ${link} is owned by uid ${NOBODY}; a symlink on the way to the policy must be owned by root$`));
});

test('path: a root-owned symlink in a root-owned directory is followed, relative or absolute, file or directory', (t) => {
  if (!needsRoot(t)) return;
  const root = tempDir(t);
  mkdirSync(join(root, 'etc'), { mode: 0o755 });
  const target = join(root, 'etc', 'policy.json');
  writeFileSync(target, VALID);
  chmodSync(target, 0o644);
  const conf = join(root, 'conf');
  mkdirSync(join(conf, 'sub'), { recursive: true, mode: 0o755 });
  symlinkSync(target, join(conf, 'absolute.json'));
  symlinkSync('../etc/policy.json', join(conf, 'relative.json'));
  symlinkSync('../etc', join(conf, 'etc-link'));
  symlinkSync('sub/../relative.json', join(conf, 'chained.json'));
  for (const name of ['absolute.json', 'relative.json', 'etc-link/policy.json', 'chained.json', 'sub/../etc-link/./policy.json']) {
    t.deepEqual(Policy.fromFile(join(conf, name), accountFiles(t)).ruleNames, ['alice'], name);
  }
});

test('path: a symlinked directory leading through a directory owned by nobody is refused', (t) => {
  if (!needsRoot(t)) return;
  const dir = nobodysDirectory(t);
  writeFileSync(join(dir, 'policy.json'), VALID, { mode: 0o644 });
  const conf = join(tempDir(t), 'conf');
  mkdirSync(conf, { mode: 0o755 });
  symlinkSync(dir, join(conf, 'd'));
  t.regex(refusal(t, join(conf, 'd', 'policy.json')), new RegExp(`directory ${dir} is owned by uid ${NOBODY}`));
});

test('path: a symlink loop is refused, not followed forever', (t) => {
  const dir = tempDir(t);
  symlinkSync('b.json', join(dir, 'a.json'));
  symlinkSync('a.json', join(dir, 'b.json'));
  t.regex(refusal(t, join(dir, 'a.json')), /cannot open: more than 40 symlinks on the way$/);
});
