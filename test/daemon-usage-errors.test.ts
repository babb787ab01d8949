/**
 * The daemon's command line speaks for itself: usage errors in its own words with exit
 * status 2 (not Node's text about positional arguments), and a non-root start refused up
 * front with exit status 1, before it touches /dev or binds a socket — while --help,
 * --version and --check-policy keep working without root.
 *
 * "Not root" is a fresh user namespace (unshare --user): there the daemon's euid is the
 * overflow uid 65534 and it has no capability on the host, yet the kernel still lets it
 * read the checkout as its owner, so the test runs wherever the checkout lives.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { runProcess, type RunResult } from './helpers/process.js';
import { DAEMON_SCRIPT, daemonArgv, SHEBANG_NODE_FLAGS } from '../testkit/repo.js';

/** Runs the daemon with `args` to its end; `notRoot`: in a fresh user namespace (see above). */
function daemon(args: string[], options: { notRoot?: boolean } = {}): Promise<RunResult> {
  // Usage errors are judged on `args` alone: none of daemonArgv's private defaults around them.
  const argv = options.notRoot ? daemonArgv(...args) : [process.execPath, ...SHEBANG_NODE_FLAGS, DAEMON_SCRIPT, ...args];
  return runProcess(options.notRoot ? ['unshare', '--user', '--', ...argv] : argv, { timeoutMs: 30_000 });
}

const USAGE_ERRORS: Array<[string[], string]> = [
  [['--foo'], 'unknown option --foo'],
  [['--foo=1'], 'unknown option --foo'],
  [['-x'], 'unknown option -x'],
  [['--socket'], 'option --socket needs a value'],
  [['--socket', '--policy', 'p.json'], 'option --socket needs a value (write --socket=--policy for one that starts with -)'],
  [['--help=yes'], 'option --help takes no value'],
  [['stray'], 'unexpected argument: stray'],
  [['--uid', '65534'], '--uid is only valid with --check-policy FILE (the policy dry run)'],
  [['--check-policy', 'p.json', '--uid', '65534'], 'the policy dry run needs --device (--uid USER --device DISKSEQ[-partM] --access MODE)'],
  [['--check-policy', 'p.json', '--uid', '1', '--device', '7p0', '--access', 'read-only'], '--device: expected DISKSEQ or DISKSEQ-partM (as in /dev/disk/by-diskseq/), got "7p0"'],
  [['--check-policy', 'p.json', '--uid', '1', '--device', '7', '--access', 'rw'], '--access: expected read-only, read-write, write-only, got "rw"'],
  [['--max-connections', '0'], '--max-connections: expected a positive whole number, got "0"'],
];

test('usage errors: one line in the daemon\'s own words, a hint, exit 2', async (t) => {
  // One at a time: a dozen node processes starting at once would slow every other test.
  for (const [args, message] of USAGE_ERRORS) {
    const run = await daemon(args);
    t.is(run.code, 2, `diskseqd ${args.join(' ')}: ${run.stderr}`);
    t.is(run.stderr, `diskseqd: ${message}\nTry 'diskseqd --help'.\n`, `diskseqd ${args.join(' ')}`);
    t.is(run.stdout, '', `diskseqd ${args.join(' ')}`);
  }
});

test.serial('not root: the daemon refuses at once, exit 1, and creates no socket', async (t) => {
  if (!needsRoot(t)) return; // creating the user namespace is what needs the privilege here
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-notroot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'd.sock');
  const run = await daemon(['--socket', socket], { notRoot: true });
  t.is(run.code, 1, run.stderr);
  t.is(run.stderr, 'diskseqd: must run as root (it opens block devices and makes device nodes); running as uid 65534\n');
  t.false(/EPERM|chmod|\.diskseqd/.test(run.stderr), 'names the cause, not a symptom');
  t.false(existsSync(socket), 'no socket was created');
  t.false(/"msg":"serving"/.test(run.stdout));
});

test.serial('not root: --help, --version and --check-policy work', async (t) => {
  if (!needsRoot(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-notroot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const policy = join(dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({ rules: [{ name: 'a', peer: { uids: [65534] } }, { name: 'b', peer: { uids: [65534] } }] }), { mode: 0o644 });
  const help = await daemon(['--help'], { notRoot: true });
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /--check-policy FILE --uid USER/);
  t.is((await daemon(['--version'], { notRoot: true })).code, 0);
  // (In the namespace the file's owner, unmapped, shows as the checker's own uid: accepted.)
  const check = await daemon(['--check-policy', policy], { notRoot: true });
  t.is(check.code, 0, check.stderr);
  t.is(check.stdout, `${policy}: valid (2 rules)\n`);
  t.is(check.stderr, '');
});
