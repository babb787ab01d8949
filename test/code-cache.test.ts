/**
 * The code cache (src/code-cache.ts): a start uses it only when it was made for that very
 * bundle, Node and flag set, undamaged, and the daemon's own; otherwise it compiles anew and
 * runs what the bundle says now. Each load runs in a fresh Node, as a start does: within one
 * process V8 keeps compiled scripts of its own, which would answer before any cache file.
 * Then the daemon itself: the first start writes the cache after its first request, the next
 * one uses it and serves.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { native } from '../native/index.js';
import { CODE_CACHE_FILE } from '../src/code-cache.js';
import { tempDir } from '../testkit/cleanup.js';
import { DaemonProcess } from '../testkit/daemon.js';
import { createLoop } from '../testkit/loop.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { WireClient } from '../testkit/wire-client.js';
import { needsRoot } from './helpers/ci.js';

const CODE_CACHE_MODULE = join(REPO_ROOT, 'dist', 'src', 'code-cache.js');

/** What one load of the bundle in a fresh Node said. */
interface Load {
  use: string;
  why?: string;
  value: string;
  /** With `raw`: what V8 alone made of the given cache file's payload (no checks of ours). */
  raw?: { rejected: boolean; value: string };
}

/**
 * Loads `bundle` with the cache in `dir` in a fresh Node (`flags` added to its command
 * line); saves the cache after when `save`. `raw`: also compiles the bundle with that V8
 * payload as cachedData directly, as a loader without our checks would.
 */
function load(bundle: string, dir: string, options: { save?: boolean; flags?: string[]; raw?: string } = {}): Load {
  const script = `
    import { loadBundle } from ${JSON.stringify(CODE_CACHE_MODULE)};
    import { readFileSync } from 'node:fs';
    import { Script } from 'node:vm';
    const [bundle, dir, save, raw] = process.argv.slice(1);
    const { exports, cache } = loadBundle(bundle, dir);
    const out = { use: cache.use, why: cache.why, value: exports.value() };
    if (save === 'save') cache.save(dir);
    if (raw !== '') {
      const source = readFileSync(bundle, 'utf8');
      const script = new Script('(function (exports, require, module, __filename, __dirname) {' + source + '\\n})', { filename: bundle + '.raw', cachedData: readFileSync(raw) });
      const module = { exports: {} };
      script.runInThisContext()(module.exports, null, module, bundle, dir);
      out.raw = { rejected: script.cachedDataRejected, value: module.exports.value() };
    }
    console.log(JSON.stringify(out));`;
  const result = spawnSync(process.execPath, [...(options.flags ?? []), '--input-type=module', '-e', script, bundle, dir, options.save ? 'save' : '', options.raw ?? ''], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`load failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout) as Load;
}

/** A bundle whose value() says `word`, and a cache directory (0700) with its saved cache. */
function cached(t: ExecutionContext, word: string): { bundle: string; dir: string; file: string } {
  const root = tempDir(t, 'diskseqd-code-cache-');
  const bundle = join(root, 'bundle.cjs');
  writeFileSync(bundle, bundleSource(word));
  const dir = join(root, 'run');
  mkdirSync(dir, { mode: 0o700 });
  const first = load(bundle, dir, { save: true });
  t.is(first.use, 'absent');
  t.is(first.value, word);
  return { bundle, dir, file: join(dir, CODE_CACHE_FILE) };
}

/** Functions enough that V8 has bytecode to cache; value() returns `word`. */
function bundleSource(word: string): string {
  return `'use strict';
const parts = ${JSON.stringify(word)}.split('');
function join(list) { return list.map((c) => c).join(''); }
module.exports.value = () => join(parts);
`;
}

/** The cache file's parts: magic line, key line, checksum line, V8 payload. */
function parts(file: string): { head: Buffer; data: Buffer } {
  const bytes = readFileSync(file);
  let at = 0;
  for (let line = 0; line < 3; line++) at = bytes.indexOf('\n', at) + 1;
  return { head: bytes.subarray(0, at), data: bytes.subarray(at) };
}

test('code cache: saved 0600 by a start that had none, used by the next, never rewritten by it', (t) => {
  const { bundle, dir, file } = cached(t, 'first');
  t.is(statSync(file).mode & 0o777, 0o600);
  t.true(readFileSync(file).subarray(0, 22).equals(Buffer.from('diskseqd code cache 2\n')));
  const written = statSync(file, { bigint: true });
  const next = load(bundle, dir, { save: true });
  t.deepEqual(next, { use: 'used', value: 'first' });
  const now = statSync(file, { bigint: true });
  t.deepEqual([now.ino, now.mtimeNs], [written.ino, written.mtimeNs], 'a start that used the cache does not write it');
});

test('code cache: a bundle beyond ASCII is read as UTF-8 (only an ASCII one as latin1), with or without the cache', (t) => {
  const word = 'caf\u00e9 \u2014 \ud83d\ude42';
  const { bundle, dir } = cached(t, word);
  t.deepEqual(load(bundle, dir), { use: 'used', value: word });
});

test('code cache: the checksum is XXH64 (its published vectors); an older format is stale, not damaged', (t) => {
  t.is(native.checksum(Buffer.from('')), 0xef46db3751d8e999n);
  t.is(native.checksum(Buffer.from('a')), 0xd24ec4f1a98c6e5bn);
  t.is(native.checksum(Buffer.from('abc')), 0x44bc2cf5ad770999n);
  // Every length up to two stripes, and a flipped bit anywhere, changes it.
  const bytes = Buffer.from(Array.from({ length: 80 }, (_, i) => (i * 37) & 0xff));
  const seen = new Set<bigint>();
  for (let length = 0; length <= bytes.length; length++) seen.add(native.checksum(bytes.subarray(0, length)));
  t.is(seen.size, bytes.length + 1);
  for (let at = 0; at < bytes.length; at++) {
    const flipped = Buffer.from(bytes);
    flipped[at]! ^= 0x10;
    t.not(native.checksum(flipped), native.checksum(bytes), `bit flipped at byte ${at}`);
  }
  const { bundle, dir, file } = cached(t, 'older');
  const text = readFileSync(file);
  writeFileSync(file, Buffer.concat([Buffer.from('diskseqd code cache 1\n'), text.subarray(text.indexOf('\n') + 1)]), { mode: 0o600 });
  t.deepEqual(load(bundle, dir), { use: 'stale', value: 'older' });
});

test('code cache: an edit of the same length runs as edited; V8 alone would have run the old code', (t) => {
  const { bundle, dir, file } = cached(t, 'old-code');
  const old = join(dir, 'old-payload');
  writeFileSync(old, parts(file).data);
  writeFileSync(bundle, bundleSource('new-code')); // the same length: all V8 compares
  const after = load(bundle, dir, { raw: old });
  t.is(after.use, 'stale');
  t.is(after.value, 'new-code');
  // Why the cache names the bundle file itself: V8 took the old payload and ran the old code.
  t.deepEqual(after.raw, { rejected: false, value: 'old-code' });
});

test('code cache: another flag set is stale; a flipped byte is damaged; a payload V8 refuses is rejected', (t) => {
  const { bundle, dir, file } = cached(t, 'flags');
  t.like(load(bundle, dir, { flags: ['--stack-size=900'] }), { use: 'stale', value: 'flags' });

  const { head, data } = parts(file);
  const flipped = Buffer.from(data);
  flipped[flipped.length >> 1]! ^= 0xff;
  writeFileSync(file, Buffer.concat([head, flipped]), { mode: 0o600 });
  t.like(load(bundle, dir), { use: 'damaged', why: 'checksum mismatch', value: 'flags' });

  // Our checks pass (the checksum is recomputed), V8's own do not.
  const garbage = Buffer.alloc(data.length, 0x5a);
  const lines = head.toString('latin1').split('\n');
  lines[2] = native.checksum(garbage).toString(16);
  writeFileSync(file, Buffer.concat([Buffer.from(lines.join('\n'), 'latin1'), garbage]), { mode: 0o600 });
  t.like(load(bundle, dir), { use: 'rejected', value: 'flags' });

  writeFileSync(file, 'not a cache\n', { mode: 0o600 });
  t.like(load(bundle, dir), { use: 'damaged', value: 'flags' });
});

test('code cache: a file that is not the daemon\'s own, or in a directory others may write, is not read', (t) => {
  const { bundle, dir, file } = cached(t, 'trust');
  chmodSync(file, 0o644);
  t.like(load(bundle, dir), { use: 'untrusted', why: 'mode 0644, not 0600', value: 'trust' });
  chmodSync(file, 0o600);
  t.like(load(bundle, dir), { use: 'used' }, 'the same file, mode 0600 again');

  chmodSync(dir, 0o777);
  t.like(load(bundle, dir), { use: 'untrusted', value: 'trust' });
  chmodSync(dir, 0o700);

  const elsewhere = join(dir, 'elsewhere');
  writeFileSync(elsewhere, readFileSync(file), { mode: 0o600 });
  unlinkSync(file);
  symlinkSync(elsewhere, file);
  const linked = load(bundle, dir);
  t.like(linked, { use: 'untrusted', value: 'trust' });
  t.regex(linked.why ?? '', /ELOOP/);
});

// scripts/bundle.js spells the comments esbuild keeps in ASCII: one character beyond it (the
// sources' dashes) makes Node read the file into a two-byte string, which cost every start
// ~5 ms with the cache.
test('bundles: the loader and the daemon are ASCII, so that Node reads them into one-byte strings', (t) => {
  for (const name of ['start.cjs', 'diskseqd.cjs']) {
    const bytes = readFileSync(join(REPO_ROOT, 'dist', 'bundle', name));
    const at = bytes.findIndex((byte) => byte > 0x7f);
    t.is(at, -1, `${name}: byte ${at} is beyond ASCII: ${bytes.subarray(Math.max(0, at - 40), at + 10).toString()}`);
  }
});

// scripts/bundle.js gives the bundles their own require() for createRequire(): node:module,
// with the ES module loader it brings, cost every start ~1.1 ms.
test('bundles: a start loads no node:module', (t) => {
  const dir = tempDir(t);
  const probe = join(dir, 'probe.cjs');
  writeFileSync(probe, "process.on('exit', () => require('node:fs').writeSync(3, JSON.stringify(process.moduleLoadList)));\n");
  // A --cache-dir of its own: the loader reads the cache directory first, never the machine's here.
  const run = spawnSync(process.execPath, ['-r', probe, join(REPO_ROOT, 'bin', 'diskseqd.cjs'), '--cache-dir', join(dir, 'cache'), '--version'],
    { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  t.regex(run.stdout, /^diskseqd [0-9]/);
  const loaded = JSON.parse(run.output[3] as string) as string[];
  t.true(loaded.includes('NativeModule vm'), 'the list is of the loader\'s modules');
  t.false(loaded.includes('NativeModule module'), 'node:module was loaded');
});

// The bundles load the addon with process.dlopen through one registry on the process
// (scripts/bundle.js): the loader and the daemon's bundle share one copy, initialised once.
test('bundles: a start opens the addon once, with process.dlopen, and never through require()', (t) => {
  const dir = tempDir(t);
  const probe = join(dir, 'probe.cjs');
  writeFileSync(probe, `const opened = [];
const dlopen = process.dlopen;
process.dlopen = function (module, path, ...rest) { opened.push(path); return dlopen.call(this, module, path, ...rest); };
const Module = require('node:module');
const load = Module._load;
const required = [];
Module._load = function (request, ...rest) { if (String(request).endsWith('.node')) required.push(request); return load.call(this, request, ...rest); };
process.on('exit', () => require('node:fs').writeSync(3, JSON.stringify({ opened, required })));
`);
  const run = spawnSync(process.execPath, ['-r', probe, join(REPO_ROOT, 'bin', 'diskseqd.cjs'), '--cache-dir', join(dir, 'cache'), '--version'],
    { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  const { opened, required } = JSON.parse(run.output[3] as string) as { opened: string[]; required: string[] };
  t.deepEqual(opened, [join(REPO_ROOT, 'build', 'Release', 'diskseqd.node')]);
  t.deepEqual(required, []);
});

test('daemon: the first start writes the cache into --cache-dir after its first request; the next, after a reboot, uses it and opens', async (t) => {
  if (!needsRoot(t)) return;
  const loop = createLoop({});
  t.teardown(() => loop.cleanup());
  // Each start gets a runtime directory of its own, as after a reboot (/run is emptied);
  // the cache directory persists, and the daemon creates it.
  const base = tempDir(t, 'diskseqd-code-cache-daemon-');
  const cacheDir = join(base, 'cache');
  let boots = 0;
  const start = () => DaemonProcess.start({ cacheDir, runtimeDir: join(base, `run${boots++}`) }, t);
  const serving = async (daemon: DaemonProcess) => (await daemon.waitForLog((l) => l.msg === 'serving')).codeCache;

  const first = await start();
  t.is(await serving(first), 'absent');
  const client = WireClient.connect(first.socketPath);
  await client.hello();
  client.close();
  await first.waitForLog((l) => l.msg === 'code cache saved', 10_000);
  await first.stop();
  t.is(statSync(cacheDir).mode & 0o777, 0o700);
  t.is(statSync(join(cacheDir, CODE_CACHE_FILE)).mode & 0o777, 0o600);
  t.false(existsSync(join(first.runtimeDir, CODE_CACHE_FILE)), 'not in the runtime directory');

  const next = await start();
  t.is(await serving(next), 'used');
  const again = WireClient.connect(next.socketPath);
  try {
    const opened = await again.open({ diskseq: loop.diskseq });
    t.true(opened.ok, JSON.stringify(opened));
    if (opened.ok) {
      t.is(native.probeFdSync(opened.fd).diskseq, loop.diskseq);
      native.close(opened.fd);
    }
  } finally {
    again.close();
  }
  await next.stop();

  // A damaged file is said so, and replaced by that start.
  const { head, data } = parts(join(cacheDir, CODE_CACHE_FILE));
  data[data.length >> 1]! ^= 0xff;
  writeFileSync(join(cacheDir, CODE_CACHE_FILE), Buffer.concat([head, data]), { mode: 0o600 });
  const third = await start();
  t.like(await third.waitForLog((l) => l.msg === 'code cache ignored; the daemon is compiled anew'), { use: 'damaged', why: 'checksum mismatch' });
  const probe = WireClient.connect(third.socketPath);
  await probe.hello();
  probe.close();
  await third.waitForLog((l) => l.msg === 'code cache saved', 10_000);
  await third.stop();
  const fourth = await start();
  t.is(await serving(fourth), 'used');
  await fourth.stop();
});
