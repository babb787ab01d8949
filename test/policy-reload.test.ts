// Policy files through the real daemon binary: `diskseqd --check-policy` exit codes and
// messages (file, rule, field) for each kind of mistake; a daemon started with a bad file
// exits non-zero without ever creating its socket; SIGHUP with a broken file keeps the old
// policy in force and the daemon serving, and a fixed file then takes effect.
import test from 'ava';
import { chmodSync, chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { daemonArgv } from '../testkit/repo.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRoot } from './helpers/ci.js';
import { NOBODY, runPeer } from './helpers/peer.js';
import {
  openAudits, policyDir, reload, waitOpenAudits, writePolicy,
} from './helpers/policy-e2e-support.js';
import { runProcess } from './helpers/process.js';

/** A rule nobody may use to read loop devices; valid on its own. */
const GOOD_RULE = { name: 'good', peer: { uids: [NOBODY.uid] }, access: ['read-only'], loop_devices: true };

/** Each kind of mistake: a file (a valid rule first, so the broken one is not #0), and what the message must say. */
const MISTAKES: Array<{ kind: string; rule: Record<string, unknown>; message: (file: string) => RegExp }> = [
  {
    kind: 'unknown field',
    rule: { name: 'typo', peer: { uids: [NOBODY.uid] }, device: { nmes: ['loop*'] } },
    message: (f) => new RegExp(`^${esc(f)}: rule "typo": field "device\\.nmes": unknown field "nmes" \\(expected [^)]*names[^)]*\\)\n$`),
  },
  {
    kind: 'wrong type',
    rule: { name: 'stringly', peer: { uids: [NOBODY.uid] }, exclusive: 'yes' },
    message: (f) => new RegExp(`^${esc(f)}: rule "stringly": field "exclusive": wrong type: expected true or false, got a string \\("yes"\\)\n$`),
  },
  {
    kind: 'bad glob',
    rule: { name: 'globber', peer: { uids: [NOBODY.uid] }, device: { names: ['loop*', 'loop[z-a]'] } },
    message: (f) => new RegExp(`^${esc(f)}: rule "globber": field "device\\.names\\[1\\]": bad glob "loop\\[z-a\\]": [^\n]+\n$`),
  },
  {
    kind: 'unknown access mode',
    rule: { name: 'backup', peer: { uids: [NOBODY.uid] }, access: ['read-only', 'rw'] },
    message: (f) => new RegExp(`^${esc(f)}: rule "backup": field "access\\[1\\]": unknown access mode "rw" \\(expected read-only, read-write or write-only\\)\n$`),
  },
  {
    kind: 'empty rule name',
    rule: { name: '', peer: { uids: [NOBODY.uid] } },
    message: (f) => new RegExp(`^${esc(f)}: rule #1: field "name": empty rule name\n$`),
  },
];

function esc(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('--check-policy: exit 0 for a valid file, exit 1 naming file, rule and field for each kind of mistake, exit 1 for a missing file', async (t) => {
  const dir = policyDir(t);
  const good = writePolicy(join(dir, 'good.json'), { rules: [GOOD_RULE] });
  const ok = await runProcess(daemonArgv('--check-policy', good));
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout, `${good}: valid (1 rule)\n`);
  t.is(ok.stderr, '');

  const messages = new Set<string>();
  for (const mistake of MISTAKES) {
    const file = writePolicy(join(dir, `${mistake.kind.replaceAll(' ', '-')}.json`), { rules: [GOOD_RULE, mistake.rule] });
    const result = await runProcess(daemonArgv('--check-policy', file));
    t.is(result.code, 1, `${mistake.kind}: exit status`);
    t.is(result.stdout, '', `${mistake.kind}: nothing claims it is valid`);
    t.regex(result.stderr, mistake.message(file), `${mistake.kind}: message`);
    messages.add(result.stderr.slice(file.length));
  }
  t.is(messages.size, MISTAKES.length, 'each kind of mistake has its own message');

  const missing = join(dir, 'missing.json');
  const absent = await runProcess(daemonArgv('--check-policy', missing));
  t.is(absent.code, 1, 'missing file: exit status');
  t.regex(absent.stderr, new RegExp(`^${esc(missing)}: [^\n]*ENOENT`), absent.stderr);

  // Whoever can write the file decides who gets every disk: a group-writable file is refused.
  const writable = writePolicy(join(dir, 'writable.json'), { rules: [GOOD_RULE] });
  chmodSync(writable, 0o664);
  const loose = await runProcess(daemonArgv('--check-policy', writable));
  t.is(loose.code, 1);
  t.regex(loose.stderr, new RegExp(`^${esc(writable)}: mode 0664`), loose.stderr);
});

test('startup with a bad policy file: exit 1 with the message naming file, rule and field (or owner), and no socket', async (t) => {
  if (!needsRoot(t)) return;
  const dir = policyDir(t);
  const sockDir = tempDir(t, 'diskseqd-pe2e-sock-');
  for (const mistake of [MISTAKES[3]!, MISTAKES[0]!]) {
    const file = writePolicy(join(dir, 'policy.json'), { rules: [GOOD_RULE, mistake.rule] });
    const socket = join(sockDir, 'd.sock');
    const result = await runProcess(daemonArgv('--socket', socket, '--policy', file));
    t.is(result.code, 1, `${mistake.kind}: exit status (signal ${result.signal}); stdout: ${result.stdout}`);
    t.regex(result.stderr, new RegExp(`^diskseqd: ${mistake.message(file).source.slice(1)}`), `${mistake.kind}: message`);
    t.false(existsSync(socket), `${mistake.kind}: no socket was created`);
    t.false(/"msg":"serving"/.test(result.stdout), `${mistake.kind}: never served`);
  }
  const socket = join(sockDir, 'd.sock');
  // Whoever owns the file can chmod it and decide who gets every disk: only root's is loaded.
  const foreign = writePolicy(join(dir, 'foreign.json'), { rules: [GOOD_RULE] });
  chownSync(foreign, NOBODY.uid, NOBODY.gid);
  const owned = await runProcess(daemonArgv('--socket', socket, '--policy', foreign));
  t.is(owned.code, 1);
  t.regex(owned.stderr, new RegExp(`^diskseqd: ${esc(foreign)}: owned by uid 65534`), owned.stderr);
  t.false(existsSync(socket));

  // A policy file named on the command line must exist (no silent fallback to the default).
  const missing = await runProcess(daemonArgv('--socket', socket, '--policy', join(dir, 'missing.json')));
  t.is(missing.code, 1);
  t.regex(missing.stderr, /missing\.json: [^\n]*ENOENT/);
  t.false(existsSync(socket));
});

test('SIGHUP: a broken file is logged and the old policy stays; a fixed file then takes effect', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({}, t);
  const path = writePolicy(join(policyDir(t), 'policy.json'), {
    rules: [{ name: 'nobody-reads-v1', peer: { uids: ['nobody'], groups: ['nogroup'] }, device: { names: [loop.name] }, access: ['read-only'], loop_devices: true }],
  });
  const daemon = await DaemonProcess.start({ worldAccessible: true, policy: path }, t);
  const step = { op: 'open' as const, diskseq: loop.diskseq.toString(), readMarkerAt: 0 };
  /** nobody opens the loop read-only; resolves with its outcome and the audit line's rule. */
  const nobodyOpens = async (): Promise<{ outcome: string; rule: unknown; marker?: string }> => {
    const from = openAudits(daemon).length;
    const report = await runPeer(NOBODY, { socket: daemon.socketPath, steps: [step] });
    const [audit] = await waitOpenAudits(daemon, from, 1);
    const result = report.results[0];
    return { outcome: result?.ok ? 'OK' : result?.code ?? 'none', rule: audit?.rule, marker: result?.ok ? result.marker : undefined };
  };

  t.deepEqual(await nobodyOpens(), { outcome: 'OK', rule: 'nobody-reads-v1', marker: loop.image.diskMarker }, 'v1 allows nobody');

  // Broken: v2 would deny nobody, but has an unknown access mode.
  writePolicy(path, {
    rules: [{ name: 'nobody-denied-v2', effect: 'deny', peer: { uids: [NOBODY.uid] } }, { ...GOOD_RULE, name: 'broken-v2', access: ['rw'] }],
  });
  const failed = await reload(daemon);
  t.regex(String(failed.msg), /^policy reload failed; the old policy stays in force/, JSON.stringify(failed));
  t.is(failed.level, 'error', 'logged as an error');
  t.regex(String(failed.error), new RegExp(`^${esc(path)}: rule "broken-v2": field "access\\[0\\]": unknown access mode "rw"`), JSON.stringify(failed));
  t.deepEqual(await nobodyOpens(), { outcome: 'OK', rule: 'nobody-reads-v1', marker: loop.image.diskMarker }, 'the old policy is still in force');
  t.is(daemon.exit, undefined, 'the daemon keeps running');

  // Fixed, with a changed rule: nobody is now denied, by the new rule.
  writePolicy(path, { rules: [{ name: 'nobody-denied-v3', effect: 'deny', peer: { uids: [NOBODY.uid] } }, GOOD_RULE] });
  const reloaded = await reload(daemon);
  t.is(reloaded.msg, 'policy reloaded', JSON.stringify(reloaded));
  t.is(reloaded.policy, path);
  t.deepEqual(reloaded.rules, ['nobody-denied-v3', 'good']);
  t.deepEqual(await nobodyOpens(), { outcome: 'PERMISSION_DENIED', rule: 'nobody-denied-v3', marker: undefined }, 'the new policy is in force');
});
