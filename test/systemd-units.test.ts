/**
 * The shipped units: `systemd-analyze verify` passes on both, the hardening the daemon
 * depends on is there (and what would break it is not), and the offline exposure score
 * does not regress.
 *
 * verify insists that ExecStart's binary exists; the unit names `diskseqd`, which only a
 * global install provides. So the test verifies copies in a temporary directory whose
 * ExecStart runs this checkout's bin/diskseqd.cjs with this Node instead; every other line
 * is verified as shipped.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../testkit/repo.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsTool } from './helpers/ci.js';
import { DEFAULT_CACHE_DIR, DEFAULT_RUNTIME_DIR } from '../src/options.js';

const run = promisify(execFile);
const service = readFileSync(join(REPO_ROOT, 'systemd/diskseqd.service'), 'utf8');
const socket = readFileSync(join(REPO_ROOT, 'systemd/diskseqd.socket'), 'utf8');
const varlinkSocket = readFileSync(join(REPO_ROOT, 'systemd/diskseqd-varlink.socket'), 'utf8');

/** The value(s) of a directive, from every line that sets it (comments ignored). */
function directive(unit: string, key: string): string[] {
  return unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

/** Both units copied to a temp dir, ExecStart pointing at this checkout. */
function testableCopies(t: ExecutionContext): { dir: string; service: string } {
  const dir = tempDir(t);
  const shipped = /^ExecStart=diskseqd /m;
  t.regex(service, shipped, 'ExecStart names the installed binary');
  const local = service.replace(shipped, `ExecStart=${process.execPath} ${join(REPO_ROOT, 'bin/diskseqd.cjs')} `);
  t.not(local, service);
  writeFileSync(join(dir, 'diskseqd.service'), local);
  writeFileSync(join(dir, 'diskseqd.socket'), socket);
  writeFileSync(join(dir, 'diskseqd-varlink.socket'), varlinkSocket);
  return { dir, service: join(dir, 'diskseqd.service') };
}

test('systemd-analyze verify passes on both sockets and the service', async (t) => {
  const analyze = needsTool(t, 'systemd-analyze');
  if (analyze === undefined) return;
  const { dir } = testableCopies(t);
  const result = await run(analyze, ['verify', join(dir, 'diskseqd.socket'), join(dir, 'diskseqd-varlink.socket'), join(dir, 'diskseqd.service')])
    .catch((error: { stderr?: string; code?: number }) => error);
  t.is((result as { code?: number }).code ?? 0, 0, (result as { stderr?: string }).stderr);
  t.is((result as { stderr: string }).stderr, '');
});

test('the socket is a SEQPACKET socket at the default path, named for the daemon', (t) => {
  t.deepEqual(directive(socket, 'ListenSequentialPacket'), ['/run/diskseqd.sock']);
  t.deepEqual(directive(socket, 'Listen' + 'Stream'), []);
  t.deepEqual(directive(socket, 'FileDescriptorName'), ['seqpacket']);
});

test('the Varlink socket is a stream socket where systemd looks for storage providers, starting the one service', (t) => {
  t.deepEqual(directive(varlinkSocket, 'ListenStream'), ['/run/systemd/io.systemd.StorageProvider/diskseq']);
  t.deepEqual(directive(varlinkSocket, 'ListenSequentialPacket'), []);
  t.deepEqual(directive(varlinkSocket, 'FileDescriptorName'), ['varlink']);
  t.deepEqual(directive(varlinkSocket, 'Service'), ['diskseqd.service']);
  t.deepEqual(directive(varlinkSocket, 'SocketMode'), ['0666']);
  // The service is ordered after it, so that an enabled Varlink socket is always passed.
  t.true(directive(service, 'After').join(' ').split(/\s+/).includes('diskseqd-varlink.socket'));
});

test('the service is Type=notify, socket-activated, idle-exiting, and hardened without breaking the daemon', (t) => {
  t.deepEqual(directive(service, 'Type'), ['notify']);
  t.deepEqual(directive(service, 'Requires'), ['diskseqd.socket']);
  t.regex(directive(service, 'ExecStart')[0], /--idle-exit [0-9]+/);
  // V8's JIT needs W+X memory.
  t.deepEqual(directive(service, 'MemoryDenyWriteExecute'), []);
  // Kernel uevents reach only the initial network namespace.
  t.deepEqual(directive(service, 'PrivateNetwork'), []);
  t.deepEqual(directive(service, 'RestrictAddressFamilies'), ['AF_UNIX AF_NETLINK']);
  // Real block devices, and mknod of private nodes.
  t.deepEqual(directive(service, 'PrivateDevices'), []);
  t.deepEqual(directive(service, 'DevicePolicy'), ['closed']);
  t.deepEqual(directive(service, 'DeviceAllow'), ['block-* rwm']);
  t.deepEqual(directive(service, 'ProtectSystem'), ['strict']);
  // /proc/devices names the block drivers that policy rules match on.
  t.deepEqual(directive(service, 'ProcSubset'), []);
  t.deepEqual(directive(service, 'LogRateLimitIntervalSec'), ['0']);
  // Loop partitions' provenance in /run/diskseqd must outlive idle exits, until reboot.
  t.deepEqual(directive(service, 'RuntimeDirectory'), ['diskseqd']);
  t.is(`/run/${directive(service, 'RuntimeDirectory')[0]}`, DEFAULT_RUNTIME_DIR, 'the daemon\'s default --runtime-dir');
  t.deepEqual(directive(service, 'RuntimeDirectoryMode'), ['0700']);
  t.deepEqual(directive(service, 'RuntimeDirectoryPreserve'), ['yes']);
  t.deepEqual(directive(service, 'CacheDirectory'), ['diskseqd']);
  t.is(`/var/cache/${directive(service, 'CacheDirectory')[0]}`, DEFAULT_CACHE_DIR, 'the daemon\'s default --cache-dir');
  t.deepEqual(directive(service, 'CacheDirectoryMode'), ['0700']);
  const caps = directive(service, 'CapabilityBoundingSet').join(' ').split(/\s+/).sort();
  t.deepEqual(caps, ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_MKNOD']);
});

test('systemd-analyze security --offline exposure stays at or below 2.0', async (t) => {
  const analyze = needsTool(t, 'systemd-analyze');
  if (analyze === undefined) return;
  const copies = testableCopies(t);
  // Exit status is the exposure level compared with --threshold (default 100): not an error.
  const { stdout } = await run(analyze, ['security', '--offline=true', '--no-pager', copies.service]);
  const match = /Overall exposure level for diskseqd\.service: ([0-9.]+)/.exec(stdout);
  t.truthy(match, stdout);
  const score = Number(match![1]);
  t.log(`exposure ${score}`);
  t.true(score <= 2.0, `exposure ${score}`);
});
