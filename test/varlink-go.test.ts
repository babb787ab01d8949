// The provider driven by an implementation nobody here wrote: Debian's Go Varlink library
// (github.com/varlink/go, golang-github-varlink-go-dev) through test/go/varlink-probe,
// compiled by this test in GOPATH mode. GetInfo, GetInterfaceDescription parsed by the
// library's own IDL parser, ListVolumes with more, Acquire's replies and errors, the
// generic errors, pipelined calls; and the same binary as uid 65534 with and without a
// granting rule. The Go library ignores ancillary data, so the fds are checked by the
// test client (varlink-provider.test.ts) and the unprivileged peer below.
import test, { type ExecutionContext } from 'ava';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { needsRoot } from './helpers/ci.js';
import { PROVIDER, startVarlinkBroker } from './helpers/varlink.js';
import type { VarlinkPeerResult, VarlinkPeerScript } from './helpers/varlink-peer-main.js';
import { createLoop } from '../testkit/loop.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { INTERFACES } from '../src/varlink/interfaces.js';

const run = promisify(execFile);
const GOPATH = '/usr/share/gocode';
const LIBRARY = join(GOPATH, 'src/github.com/varlink/go/varlink');
const NOBODY = 65534;

/** The probe, built once per test process into a directory every uid may read; undefined when Go is missing. */
let built: Promise<string> | undefined;
function buildProbe(): Promise<string> {
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diskseqd-go-probe-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    const binary = join(dir, 'varlink-probe');
    await run('go', ['build', '-o', binary, join(REPO_ROOT, 'test/go/varlink-probe/main.go')], {
      env: { ...process.env, GO111MODULE: 'off', GOPATH, GOCACHE: join(dir, 'cache'), GOFLAGS: '' }, cwd: dir,
    });
    chmodSync(binary, 0o755);
    return binary;
  })();
  return built;
}

/** True when Go and the library are installed; otherwise fails under CI=true, else skips loudly. */
function needsGo(t: ExecutionContext): boolean {
  let go = false;
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    go = existsSync(LIBRARY);
  } catch {
    go = false;
  }
  if (go) return true;
  const why = 'golang-go and golang-github-varlink-go-dev are not installed (see the README set-up command)';
  if (process.env.CI === 'true') t.fail(`CI=true and ${why}`);
  else {
    console.warn(`\n*** SKIPPED (not a pass): ${t.title}: ${why} ***\n`);
    t.pass();
  }
  return false;
}

/** Runs the probe (as `uid` when given, through setpriv) and parses its JSON line. */
async function probe<T>(args: string[], uid?: number): Promise<T> {
  const binary = await buildProbe();
  const argv = uid === undefined ? [binary, ...args] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', binary, ...args];
  const { stdout } = await run(argv[0]!, argv.slice(1), { timeout: 30_000 });
  return JSON.parse(stdout) as T;
}

interface GoReply { parameters?: Record<string, unknown>; continues?: boolean; error?: string; failure?: string }
type Call = { method: string; parameters?: Record<string, unknown> | null; more?: boolean; oneway?: boolean };
const calls = (socket: string, list: Call[], uid?: number) => probe<GoReply[][]>(['calls', socket, JSON.stringify(list)], uid);

test('GetInfo and GetInterfaceDescription through the Go library; its IDL parser reads both interfaces as defined', async (t) => {
  if (!needsRoot(t) || !needsGo(t)) return;
  const { path } = await startVarlinkBroker(t);
  const info = await probe<Record<string, unknown>>(['info', path]);
  t.like(info, { vendor: 'diskseqd', interfaces: ['org.varlink.service', PROVIDER] });
  t.regex(info.version as string, /^\d+\.\d+\.\d+/);

  for (const name of INTERFACES.keys()) {
    const parsed = await probe<{ name?: string; methods: Record<string, { in: string[]; out: string[] }>; errors: Record<string, string[]>; parseErrorLowered?: string; parsedWithLoweredName?: boolean }>(['describe', path, name]);
    t.is(parsed.parseErrorLowered, undefined, `${name}: ${JSON.stringify(parsed)}`);
    t.is(parsed.name, name.toLowerCase());
    // The library accepts only lower-case interface names; systemd's has an upper-case part.
    t.is(parsed.parsedWithLoweredName === true, name !== name.toLowerCase());
    const iface = INTERFACES.get(name)!;
    for (const member of iface.members) {
      if (member.kind === 'method') {
        t.deepEqual(parsed.methods[member.name], { in: member.input.map((f) => `${f.name}: ${f.type}`), out: member.output.map((f) => `${f.name}: ${f.type}`) }, `${name}.${member.name}`);
      } else if (member.kind === 'error') {
        t.deepEqual(parsed.errors[member.name], member.fields.map((f) => `${f.name}: ${f.type}`), `${name}.${member.name}`);
      }
    }
  }
  t.deepEqual(Object.keys((await probe<{ methods: object }>(['describe', path, PROVIDER])).methods).sort(), ['Acquire', 'ListTemplates', 'ListVolumes']);
  const missing = await probe<{ error: GoReply }>(['describe', path, 'com.example.Nothing']);
  t.deepEqual(missing.error, { error: 'org.varlink.service.InterfaceNotFound', parameters: { interface: 'com.example.Nothing' } });
});

test('ListVolumes with more, Acquire replies and errors, and the generic errors, pipelined, through the Go library', async (t) => {
  if (!needsRoot(t) || !needsGo(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const { path, daemon } = await startVarlinkBroker(t);
  const d = `${loop.diskseq}`;
  const results = await calls(path, [
    { method: `${PROVIDER}.ListVolumes`, parameters: { matchName: `${d}*` }, more: true },
    { method: `${PROVIDER}.Acquire`, parameters: { name: d, readOnly: true } },
    { method: `${PROVIDER}.Acquire`, parameters: { name: `${d}-part1` } },
    { method: `${PROVIDER}.Acquire`, parameters: { name: loop.name } },
    { method: `${PROVIDER}.Acquire`, parameters: { name: d, createMode: 'new' } },
    { method: `${PROVIDER}.Acquire`, parameters: { name: d, readOnly: 'no' } },
    { method: `${PROVIDER}.Acquire`, parameters: { name: d }, oneway: true },
    { method: `${PROVIDER}.ListVolumes`, parameters: {} },
    { method: `${PROVIDER}.ListTemplates`, parameters: {}, more: true },
    { method: `${PROVIDER}.Resize`, parameters: {} },
    { method: 'com.example.Thing.Do', parameters: {} },
    { method: 'org.varlink.service.GetInfo', parameters: null },
  ]);
  t.deepEqual(results[0], [
    { parameters: { name: d, type: 'blk', readOnly: false, sizeBytes: loop.image.sizeBytes }, continues: true },
    { parameters: { name: `${d}-part1`, type: 'blk', readOnly: false, sizeBytes: 2 * 1024 * 1024 } },
  ]);
  t.deepEqual(results[1], [{ parameters: { fileDescriptorIndex: 0, type: 'blk', readOnly: true } }]);
  t.deepEqual(results[2], [{ parameters: { fileDescriptorIndex: 0, type: 'blk', readOnly: false } }]);
  t.deepEqual(results.slice(3, 11), [
    [{ error: `${PROVIDER}.NoSuchVolume`, parameters: {} }],
    [{ error: `${PROVIDER}.CreateNotSupported`, parameters: {} }],
    [{ error: 'org.varlink.service.InvalidParameter', parameters: { parameter: 'readOnly' } }],
    [],
    [{ error: 'org.varlink.service.ExpectedMore', parameters: {} }],
    [{ error: `${PROVIDER}.NoSuchTemplate`, parameters: {} }],
    [{ error: 'org.varlink.service.MethodNotFound', parameters: { method: `${PROVIDER}.Resize` } }],
    [{ error: 'org.varlink.service.InterfaceNotFound', parameters: { interface: 'com.example.Thing' } }],
  ]);
  t.like(results[11]![0]!.parameters, { vendor: 'diskseqd' });
  await daemon.waitForCount('audit', 12);
  const opens = daemon.audits().filter((a) => a.op === 'open');
  t.deepEqual(opens.map((a) => a.code), ['OK', 'OK', 'NOT_FOUND', 'UNSUPPORTED', 'INVALID_ARGUMENT', 'NOT_PERFORMED']);
});

const PEER_MAIN = fileURLToPath(new URL('./helpers/varlink-peer-main.js', import.meta.url));

/** Runs the unprivileged test-client peer (started as root, dropping to NOBODY before it connects). */
function runVarlinkPeer(script: VarlinkPeerScript): Promise<{ uid: number; gid: number; results: VarlinkPeerResult[]; failure?: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PEER_MAIN, JSON.stringify(script)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('error', reject);
    child.once('close', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch {
        reject(new Error(`peer printed no result: ${out}`));
      }
    });
  });
}

test('uid 65534 without a granting rule: PermissionDenied, denied before anything is opened (Go library and test client)', async (t) => {
  if (!needsRoot(t) || !needsGo(t)) return;
  const loop = createLoop({}, t);
  const { path, daemon } = await startVarlinkBroker(t, { worldAccessible: true });
  const acquire = { method: `${PROVIDER}.Acquire`, parameters: { name: `${loop.diskseq}`, readOnly: true } };
  t.deepEqual(await calls(path, [acquire], NOBODY), [[{ error: 'org.varlink.service.PermissionDenied', parameters: {} }]]);
  const peer = await runVarlinkPeer({ socket: path, uid: NOBODY, gid: NOBODY, calls: [acquire, { method: `${PROVIDER}.Acquire`, parameters: { name: `${loop.diskseq}` } }] });
  t.is(peer.uid, NOBODY);
  t.deepEqual(peer.results.map((r) => r.error), ['org.varlink.service.PermissionDenied', 'org.varlink.service.PermissionDenied']);
  await daemon.waitForCount('audit', 3);
  const denials = daemon.audits().filter((a) => a.peer.uid === NOBODY);
  t.is(denials.length, 3);
  t.true(denials.every((a) => a.decision === 'deny' && a.code === 'PERMISSION_DENIED' && a.via === 'varlink'), JSON.stringify(denials));
});

test('uid 65534 with a read-only grant: null gives read-only, true read-only, false ReadOnlyVolume (Go library and test client)', async (t) => {
  if (!needsRoot(t) || !needsGo(t)) return;
  const loop = createLoop({ partitionsMiB: [2], partscan: true }, t);
  const policy = { rules: [{ name: 'nobody-reads', peer: { uids: [NOBODY] }, device: { names: [`${loop.name}*`] }, access: ['read-only'], loop_devices: true }] };
  const { path, daemon } = await startVarlinkBroker(t, { worldAccessible: true, policy });
  const name = `${loop.diskseq}`;
  const list = [
    { method: `${PROVIDER}.Acquire`, parameters: { name } },
    { method: `${PROVIDER}.Acquire`, parameters: { name: `${name}-part1`, readOnly: true } },
    { method: `${PROVIDER}.Acquire`, parameters: { name, readOnly: false } },
  ];
  t.deepEqual(await calls(path, list, NOBODY), [
    [{ parameters: { fileDescriptorIndex: 0, type: 'blk', readOnly: true } }],
    [{ parameters: { fileDescriptorIndex: 0, type: 'blk', readOnly: true } }],
    [{ error: `${PROVIDER}.ReadOnlyVolume`, parameters: {} }],
  ]);
  const peer = await runVarlinkPeer({ socket: path, uid: NOBODY, gid: NOBODY, calls: list });
  t.is(peer.failure, undefined);
  t.deepEqual(peer.results.map((r) => [r.error, r.fdDiskseq, r.fdAccess]), [
    [undefined, name, 'ro'], [undefined, name, 'ro'], [`${PROVIDER}.ReadOnlyVolume`, undefined, undefined],
  ]);
  await daemon.waitForCount('audit', 6);
  const audits = daemon.audits().filter((a) => a.peer.uid === NOBODY);
  t.deepEqual(audits.map((a) => [a.decision, a.rule, (a.request as { fallback?: string }).fallback]), [
    ['allow', 'nobody-reads', 'read-only'], ['allow', 'nobody-reads', undefined], ['error', 'nobody-reads', 'read-only-probe'],
    ['allow', 'nobody-reads', 'read-only'], ['allow', 'nobody-reads', undefined], ['error', 'nobody-reads', 'read-only-probe'],
  ]);
});
