// The README's examples run as shown. Every `diskseq-open` line of its wrapper section and
// both client-library snippets are taken from README.md itself and run against the real
// daemon and real loop devices, with the README's made-up names mapped onto the test's:
// 42 is a disk with an ext4 partition 1 and a LUKS2 partition 2, 43 a blank disk, loop4 and
// /dev/loop4 the kernel name and node of 42, /srv/vm.img its backing file. The library
// snippets must also end by themselves: a client or watch left open keeps node running.
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { startBroker } from './helpers/broker.js';
import { needsRoot } from './helpers/ci.js';
import { cliEnv, cliOnPath, runCli } from './helpers/cli.js';
import { runProcess, type RunResult } from './helpers/process.js';
import { tempDir } from '../testkit/cleanup.js';
import { createLoop, type LoopFixture } from '../testkit/loop.js';
import { makeExt4, makeLuks } from '../testkit/preload.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { NOBODY } from '../testkit/reachable.js';
import { writePolicy } from './helpers/policy-e2e-support.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

/** The body of the first ```LANG block after `heading`. */
function blockAfter(heading: string, lang: string, nth = 0): string {
  const from = README.indexOf(heading);
  if (from < 0) throw new Error(`README.md has no ${heading}`);
  const blocks = [...README.slice(from).matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))];
  if (blocks[nth] === undefined) throw new Error(`no ${lang} block ${nth} after ${heading}`);
  return blocks[nth]![1]!;
}

const WRAPPER = '### The `diskseq-open` wrapper';
const LIBRARY = '### The client library';

/** The `diskseq-open` command lines of the wrapper section's example block. */
const commandLines = blockAfter(WRAPPER, 'sh').split('\n').filter((line) => line.startsWith('diskseq-open '));

interface Fixture {
  a: LoopFixture;
  b: LoopFixture;
  socket: string;
  /** A directory on PATH with a `diskseq-open` that runs this checkout's. */
  bin: string;
}

async function setup(t: ExecutionContext, policyFor?: (a: LoopFixture) => object): Promise<Fixture> {
  const dir = tempDir(t, 'diskseqd-readme-', { shared: true });
  const a = createLoop({ sizeMiB: 38, partitionsMiB: [16, 20], partscan: true }, t);
  makeExt4(`/dev/${a.partitionName(1)}`, 'readme-p1', '0b9e2f7c-4d1a-4c8e-9f3b-5a6d7e8f9a0b');
  makeLuks(`/dev/${a.partitionName(2)}`, dir, '1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f');
  const b = createLoop({ sizeMiB: 40 }, t);
  const policy = policyFor === undefined ? undefined : writePolicy(join(dir, 'policy.json'), policyFor(a));
  const { daemon } = await startBroker(t, policy === undefined ? {} : { policy, worldAccessible: true });
  return { a, b, socket: daemon.socketPath, bin: cliOnPath(join(dir, 'bin')) };
}

/** The README's names, mapped onto the fixture's devices. */
function localise(text: string, f: Fixture): string {
  return text.replace(/\/srv\/vm\.img|\/dev\/loop4(?![0-9])|(?<![\w/])loop4(?![0-9])|(?<![0-9])4[23](?![0-9])/g, (name) => {
    switch (name) {
      case '/srv/vm.img': return f.a.image.path;
      case '/dev/loop4': return f.a.devPath;
      case 'loop4': return f.a.name;
      case '42': return `${f.a.diskseq}`;
      default: return `${f.b.diskseq}`;
    }
  });
}

/** Runs a shell line with the fixture's diskseq-open first on PATH; `until`: SIGINT once stdout matches it. */
function sh(f: Fixture, line: string, until?: RegExp): Promise<RunResult> {
  const env = cliEnv({ DISKSEQD_SOCKET: f.socket, PATH: `${f.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, LANG: 'C.UTF-8' });
  return runProcess(['sh', '-c', until === undefined ? line : `exec ${line}`], { env, timeoutMs: 60_000, interruptWhen: until });
}

function head(path: string, bytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    return buffer.subarray(0, readSync(fd, buffer, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}

test('README: the wrapper section has the examples this test knows how to check', (t) => {
  t.true(commandLines.length >= 9, commandLines.join('\n'));
  for (const line of commandLines) t.false(line.includes('--exclusive') && /mkfs|e2fsck|fsck/.test(line), `${line}: a tool that claims O_EXCL itself`);
});

test('README: every diskseq-open example of the wrapper section runs as shown, exit 0', async (t) => {
  if (!needsRoot(t)) return;
  const f = await setup(t);
  for (const example of commandLines) {
    const line = localise(example, f);
    const watching = example.includes('--watch');
    const result = await sh(f, line, watching ? /"kind":"synced"/ : undefined);
    t.log(`${line}: exit ${result.code}, ${result.stdout.length} bytes of output`);
    t.is(result.code, 0, `${example}\n  ran as: ${line}\n  stderr: ${result.stderr}`);
    // What each kind of example shows, beyond its exit status.
    if (example.includes('luksDump')) t.regex(result.stdout, /LUKS header information/, example);
    if (example.includes('head -c 16')) t.is(result.stdout, head(`/dev/${f.a.partitionName(1)}`, 16).toString('latin1'), example);
    if (example.includes('mkfs.ext4')) t.regex(execFileSync('blkid', ['-p', '-o', 'value', '-s', 'TYPE', f.b.devPath], { encoding: 'utf8' }), /^ext4$/m, example);
    if (example.includes('qemu-img convert')) t.true(head(f.b.devPath, 38 << 20).equals(head(f.a.devPath, 38 << 20)), `${example}: 43 is now a copy of 42`);
    if (example.startsWith('diskseq-open --list') && !example.includes('--json')) t.regex(result.stdout, new RegExp(`${f.a.name} +${f.a.diskseq} `), example);
    if (example.includes('--json')) t.true(Array.isArray((JSON.parse(result.stdout) as { blockdevices?: unknown }).blockdevices), example);
    if (watching) t.regex(result.stdout, new RegExp(`"diskseq":"${f.a.diskseq}"`), example);
    if (example.includes('blkid')) t.regex(result.stdout, /TYPE="ext4"/, example);
  }
});

test('README: the client-library snippets run as shown and end by themselves (everything they open is closed)', async (t) => {
  if (!needsRoot(t)) return;
  const f = await setup(t);
  // Inside the package, so that `import 'diskseqd'` resolves to this checkout (a self-reference).
  const dir = join(REPO_ROOT, 'dist', `readme-snippets-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  t.teardown(() => execFileSync('rm', ['-rf', dir]));
  for (const [i, snippet] of [blockAfter(LIBRARY, 'ts', 0), blockAfter(LIBRARY, 'ts', 1)].entries()) {
    const js = ts.transpileModule(localise(snippet, f), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    const file = join(dir, `snippet-${i}.mjs`);
    writeFileSync(file, js);
    // Node exits only once every handle is closed: a client or watch left open is a timeout.
    const result = await runProcess([process.execPath, file], { env: cliEnv({ DISKSEQD_SOCKET: f.socket }), timeoutMs: 15_000 });
    t.is(result.signal, null, `snippet ${i} did not end by itself: ${result.stdout}${result.stderr}`);
    t.is(result.code, 0, `snippet ${i}: ${result.stderr}`);
    t.regex(result.stdout, i === 0 ? new RegExp(`^${f.a.partitionName(1)} \\d+n?\\n`) : new RegExp(`"diskseq":"${f.a.diskseq}"`), `snippet ${i}`);
    if (i === 0) t.regex(result.stdout, /^synced undefined$/m);
  }
});

test('README: as a user other than root, cryptsetup luksDump needs --disable-locks, as the README says', async (t) => {
  if (!needsRoot(t)) return;
  const f = await setup(t, (a) => ({
    // "exclusive": cryptsetup reopens {}, which a non-root peer may only under such a grant.
    rules: [{ name: 'nobody-reads-partitions', peer: { uids: [NOBODY.uid] }, device: { names: [`${a.name}p*`] }, access: ['read-only'], exclusive: true, loop_devices: true }],
  }));
  const documented = /`(diskseq-open [^`]*--disable-locks[^`]*)`/.exec(README.replace(/\s*\n\s*/g, ' '))?.[1];
  t.truthy(documented, 'the README shows the unprivileged luksDump');
  const args = localise(documented!, f).split(' ').slice(1);
  const withLocks = await runCli(args, { as: NOBODY, env: { DISKSEQD_SOCKET: f.socket } });
  t.is(withLocks.code, 0, withLocks.stderr);
  t.regex(withLocks.stdout, /LUKS header information/);
  const without = await runCli(args.filter((arg) => arg !== '--disable-locks'), { as: NOBODY, env: { DISKSEQD_SOCKET: f.socket } });
  t.not(without.code, 0, 'without --disable-locks cryptsetup refuses (if this passes, the README is wrong)');
  t.not(without.code, 125, 'the refusal is cryptsetup\'s, not diskseq-open\'s');
  t.regex(without.stderr, /lock/i);
  t.log(`without --disable-locks: exit ${without.code}: ${without.stderr.trim()}`);
});

test('README: why mkfs.ext4 takes no --exclusive — with it, mke2fs\'s own O_EXCL reopen finds the device held', async (t) => {
  if (!needsRoot(t)) return;
  const f = await setup(t);
  t.regex(README, /no --exclusive here/);
  const held = await sh(f, `diskseq-open --rw --exclusive ${f.b.diskseq} -- mkfs.ext4 {}`);
  // mke2fs's own status (1), not diskseq-open's 125: the open succeeded, the tool refused.
  t.is(held.code, 1, held.stderr);
  t.regex(held.stderr, /apparently in use by the system/);
  t.is(spawnSync('blkid', ['-p', f.b.devPath]).status, 2, 'blkid finds nothing on 43: mke2fs wrote nothing');
  // e2fsck likewise: writing, it opens {} exclusively itself.
  const p1 = `${f.a.diskseq}p1`;
  const fsck = await sh(f, `diskseq-open --rw --exclusive ${p1} -- e2fsck -f -p {}`);
  t.is(fsck.code, 8, `e2fsck's "operational error": ${fsck.stderr}`);
  t.regex(fsck.stderr + fsck.stdout, /in use/);
  const fine = await sh(f, `diskseq-open --rw ${p1} -- e2fsck -f -p {}`);
  t.is(fine.code, 0, fine.stderr);
});
