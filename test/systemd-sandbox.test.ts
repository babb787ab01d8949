/**
 * The daemon inside an approximation of diskseqd.service's sandbox, built from util-linux
 * because no systemd runs as PID 1 here: socket-activated, in a private mount namespace
 * with / and /sys read-only (ProtectSystem=strict, ProtectKernelTunables=), a hidepid
 * /proc (ProtectProc=invisible), no new privileges, and exactly
 * the unit's CapabilityBoundingSet. It must still serve a verified open. (Not covered:
 * the seccomp filter and the device cgroup, which need systemd itself.)
 */
import test from 'ava';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Long from 'long';
import { native } from '../native/index.js';
import { WireClient } from '../testkit/wire-client.js';
import { readMarker } from '../testkit/image.js';
import { createLoop } from '../testkit/loop.js';
import { daemonArgv, REPO_ROOT } from '../testkit/repo.js';
import { tempDir, within } from '../testkit/cleanup.js';
import { NOBODY, runPeer } from './helpers/peer.js';
import { spawnTracked } from './helpers/systemd.js';
import { needsTool, needsRoot } from './helpers/ci.js';

const unit = readFileSync(join(REPO_ROOT, 'systemd/diskseqd.service'), 'utf8');
const CAP_NUMBERS: Record<string, number> = { CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_FOWNER: 3, CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_MKNOD: 27 };

/** The capabilities diskseqd.service keeps (CapabilityBoundingSet=). */
function unitCapabilities(): string[] {
  const line = unit.split('\n').find((l) => l.startsWith('CapabilityBoundingSet='));
  if (line === undefined) throw new Error('diskseqd.service has no CapabilityBoundingSet=');
  return line.slice('CapabilityBoundingSet='.length).trim().split(/\s+/);
}

/** The unit's SecureBits= as setpriv options (noroot changes what uid 0 gets at exec). */
function unitSecureBits(): string {
  const line = unit.split('\n').find((l) => l.startsWith('SecureBits='));
  if (line === undefined) return '';
  const bits = line.slice('SecureBits='.length).trim().split(/\s+/).map((b) => `+${b.replace(/-/g, '_')}`);
  return `--securebits=${bits.join(',')}`;
}

/**
 * The shell script that builds the sandbox and execs "$@" in it (no fork: pid unchanged).
 * `runtimeDir` and `cacheDir` get a writable tmpfs each, as RuntimeDirectory= and
 * CacheDirectory= give the service writable directories in a read-only system.
 */
function sandboxScript(caps: string, secureBits: string, runtimeDir: string, cacheDir: string): string {
  if (!/^[-+a-z_,]+$/.test(caps) || !/^[-+a-z_,=]*$/.test(secureBits)) throw new Error(`unexpected ${caps} ${secureBits}`);
  for (const path of [runtimeDir, cacheDir]) if (!/^[-\w./]+$/.test(path)) throw new Error(`unexpected ${path}`);
  return [
    `mkdir -m 0700 ${runtimeDir} ${cacheDir}`,
    `mount -t tmpfs -o mode=0700 diskseqd-runtime ${runtimeDir}`,
    `mount -t tmpfs -o mode=0700 diskseqd-cache ${cacheDir}`,
    'mount -o remount,bind,ro /',
    'mount -o remount,bind,ro /sys',
    'mount -t proc -o hidepid=invisible proc /proc',
    `exec setpriv --no-new-privs ${secureBits} --inh-caps=-all --bounding-set=${caps} "$@"`,
  ].join(' && ');
}

test('in the unit\'s sandbox, with only its capabilities, the daemon serves root and an unprivileged peer', async (t) => {
  if (!needsRoot(t)) return;
  const activate = needsTool(t, 'systemd-socket-activate');
  const unshare = needsTool(t, 'unshare', 'util-linux');
  if (activate === undefined || unshare === undefined || needsTool(t, 'setpriv', 'util-linux') === undefined) return;
  const loop = createLoop({}, t);
  const diskseq = loop.diskseq;
  const dir = tempDir(t);
  chmodSync(dir, 0o755); // the unprivileged peer must reach the socket
  const policyPath = join(dir, 'policy.json');
  writeFileSync(policyPath, JSON.stringify({ rules: [{
    name: 'nobody-reads-loops', peer: { uids: [NOBODY.uid] }, device: { drivers: ['loop'] }, access: ['read-only'], exclusive: true,
    loop_devices: true,
  }] }), { mode: 0o644 });
  const socketPath = join(dir, 'sandboxed.sock');
  const unitCaps = unitCapabilities();
  const caps = `-all,${unitCaps.map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`).join(',')}`;
  t.log(`bounding set ${caps}`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['LISTEN_PID', 'LISTEN_FDS', 'NOTIFY_SOCKET', 'WATCHDOG_USEC']) delete env[key];
  // unshare and sh exec in place, so LISTEN_PID (set by systemd-socket-activate) stays right.
  const run = spawnTracked(t, activate, ['--seqpacket', '-l', socketPath,
    unshare, '--mount', '--propagation', 'private', '--', 'sh', '-c', sandboxScript(caps, unitSecureBits(), join(dir, 'run'), join(dir, 'cache')), 'sandbox',
    ...daemonArgv('--policy', policyPath, '--runtime-dir', join(dir, 'run'), '--cache-dir', join(dir, 'cache'))], env);
  for (let i = 0; i < 2000 && !run.stderr().includes('Listening on'); i++) await new Promise((r) => setTimeout(r, 10));
  chmodSync(socketPath, 0o666);

  const client = WireClient.connect(socketPath);
  t.teardown(() => client.close());
  const { response, fds } = await client.request({ open: { diskseq: Long.fromString(diskseq.toString(), true) } }, 30_000)
    .catch((error: Error) => { throw new Error(`${error.message}; daemon stderr: ${run.stderr()}`); });
  t.teardown(() => { for (const fd of fds) native.close(fd); });
  t.truthy(response.opened, JSON.stringify(response.toJSON()));
  // The driver name comes from /proc/devices: hidden by ProcSubset=pid, which the unit
  // therefore must not set (policy rules match on it).
  t.is(response.opened?.device?.driver, 'loop');
  t.is(fds.length, 1);
  t.is(native.probeFdSync(fds[0]).diskseq, diskseq);
  t.is(readMarker(fds[0], loop.image.diskMarkerOffset), loop.image.diskMarker);

  // An unprivileged peer gets its fd through a private node: mknod (CAP_MKNOD), an open of
  // a node whose mode is 000 (CAP_DAC_OVERRIDE) and, since the grant includes exclusive
  // (so the fd may be reopened), a chown of the inode to its group (CAP_CHOWN).
  const report = await runPeer(NOBODY, {
    socket: socketPath, via: 'wire',
    steps: [{ op: 'open', diskseq: diskseq.toString(), readMarkerAt: loop.image.diskMarkerOffset }],
  }, 30_000);
  t.deepEqual(report.results, [{ ok: true, name: loop.name, fdDiskseq: diskseq.toString(), marker: loop.image.diskMarker }],
    `${JSON.stringify(report)}; daemon stdout: ${run.stdout()}`);

  const status = readFileSync(`/proc/${run.child.pid}/status`, 'utf8');
  t.regex(status, /^NoNewPrivs:\s+1$/m, 'the sandbox really applied');
  // The daemon really holds the unit's capabilities, no more and no fewer.
  let expected = 0n;
  for (const cap of unitCaps) {
    if (CAP_NUMBERS[cap] === undefined) t.fail(`add ${cap} to CAP_NUMBERS`);
    expected |= 1n << BigInt(CAP_NUMBERS[cap] ?? 63);
  }
  t.is(BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]}`), expected);
  run.child.kill('SIGTERM');
  const result = await within(run.exited, 30_000, 'daemon exit');
  t.is(result.code, 0, result.stderr);
});
