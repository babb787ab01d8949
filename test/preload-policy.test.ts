/**
 * A read-only policy through the shim: an unprivileged peer granted read-only access reads
 * the device with an unmodified tool, and its O_RDWR open fails with EACCES - the tool
 * says "Permission denied" - while the device stays untouched (docs/preload.md).
 */
import test from 'ava';
import {
  buildProbe, createTestDisk, head, partitionMarker, probe, run, startShimDaemon,
} from '../testkit/preload.js';
import { tempDir } from '../testkit/cleanup.js';
import { NOBODY } from '../testkit/reachable.js';
import { needsRootAndShim } from './helpers/ci.js';

test('a read-only grant: reads work, O_RDWR fails with EACCES and the tool says so', async (t) => {
  if (!needsRootAndShim(t)) return;
  const probePath = buildProbe(tempDir(t, 'diskseqd-preload-policy-', { shared: true }));
  const disk = createTestDisk(t);
  const name = disk.devPath.slice('/dev/'.length);
  const daemon = await startShimDaemon(t, {
    rules: [{
      name: 'preload-test-read-only',
      peer: { uids: [NOBODY.uid] },
      device: { names: [name, `${name}p*`] },
      access: ['read-only'],
      loop_devices: true,
    }],
  });
  const opts = { socket: daemon.socketPath, as: NOBODY };
  const base = `/dev/disk/by-diskseq/${disk.diskseq}`;
  const tableBefore = run('sfdisk', ['--dump', disk.devPath], { shim: false }).stdout.toString();

  // Read-only: granted, and the right bytes.
  const dd = run('dd', [`if=${base}p2`, 'bs=512', 'count=1', 'status=none'], opts);
  t.is(dd.status, 0, dd.stderr + daemon.describe());
  t.deepEqual(dd.stdout, partitionMarker(0));
  t.is(probe(probePath, ['open', `${base}p2`, 'rdonly'], opts).errno, 0);

  // O_RDWR: refused by the policy, EACCES.
  t.is(probe(probePath, ['open', `${base}p2`, 'rdwr'], opts).errno, 13);
  t.is(probe(probePath, ['open', `${base}p2`, 'wronly'], opts).errno, 13);
  // sfdisk opens the disk O_RDWR to write a table.
  const sfdisk = run('sfdisk', ['--no-reread', '--no-tell-kernel', base], { ...opts, input: 'label: dos\n,1MiB,L\n' });
  t.not(sfdisk.status, 0);
  t.regex(sfdisk.stderr, /cannot open \/dev\/disk\/by-diskseq\/\d+: Permission denied/);
  // The shell's <> redirection opens O_RDWR|O_CREAT.
  const shell = run('sh', ['-c', `exec 3<>${base}p2 && echo opened`], opts);
  t.not(shell.status, 0);
  t.is(shell.stdout.length, 0);
  t.regex(shell.stderr, /Permission denied/);

  // Nothing was written.
  t.deepEqual(head(disk.partPath(2), 512), partitionMarker(0));
  t.is(run('sfdisk', ['--dump', disk.devPath], { shim: false }).stdout.toString(), tableBefore);
  // Root (always allowed) opens the same device read-write through the same daemon.
  t.is(probe(probePath, ['open', `${base}p2`, 'rdwr'], { socket: daemon.socketPath }).errno, 0);
});
