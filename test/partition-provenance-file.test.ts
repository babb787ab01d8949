/**
 * The provenance file of loop partitions (src/partition-provenance.ts): kept in a runtime
 * directory that must be the daemon's alone, written atomically and mode 0600, bounded,
 * and never trusted when it is corrupt, from another boot, or not the daemon's own.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { createLogger, type Logger } from '../src/log.js';
import { MAX_ENTRIES, PartitionProvenance } from '../src/partition-provenance.js';
import { tempDir } from '../testkit/cleanup.js';
import { daemonArgv } from '../testkit/repo.js';
import { needsRoot } from './helpers/ci.js';

/** A logger whose lines the test can read. */
function capturingLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', {
    format: 'json', journal: false,
    sink: { write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>), flush: () => 0, dropped: 0, backlogBytes: 0 },
  });
  return { log, lines };
}

function runtimeDir(t: ExecutionContext): string {
  return join(tempDir(t, 'diskseqd-provenance-file-'), 'run');
}

test('provenance: saved atomically (mode 0600, no temp file left) and found again by the next instance', (t) => {
  const dir = runtimeDir(t);
  const first = PartitionProvenance.inDirectory(dir, capturingLog().log);
  t.is(statSync(dir).mode & 0o7777, 0o700, 'the directory is created 0700');
  first.recordAdd('loop7p1', 1234n, 42n);
  first.observe('loop7p2', 1235n, 42n);
  first.save();
  t.deepEqual(readdirSync(dir), ['partition-provenance.json']);
  t.is(statSync(join(dir, 'partition-provenance.json')).mode & 0o777, 0o600);

  const { log, lines } = capturingLog();
  const second = PartitionProvenance.inDirectory(dir, log);
  t.true(second.allows('loop7p1', 1234n, 42n));
  t.true(second.allows('loop7p2', 1235n, 42n));
  t.false(second.allows('loop7p1', 1234n, 43n), 'another instance of the disk: refused');
  t.false(second.allows('loop7p1', 9999n, 42n), 'another partition object of the same name: refused');
  t.like(lines.find((l) => l.msg === 'partition provenance loaded'), { partitions: 2 });
  // observe() never overrides what an add event or an earlier observation said of an object.
  second.observe('loop7p1', 1234n, 43n);
  t.false(second.allows('loop7p1', 1234n, 43n));
  second.forget('loop7p1');
  t.false(second.allows('loop7p1', 1234n, 42n));
  second.retainOnly(new Set());
  t.is(second.size, 0);
});

test('provenance: a corrupt, foreign-boot, wrongly owned or too open file is ignored with a warning', (t) => {
  if (!needsRoot(t)) return;
  const dir = runtimeDir(t);
  const good = PartitionProvenance.inDirectory(dir, capturingLog().log);
  good.recordAdd('loop7p1', 1234n, 42n);
  good.save();
  const file = join(dir, 'partition-provenance.json');
  const valid = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const cases: Array<[string, () => void, RegExp]> = [
    ['corrupt', () => writeFileSync(file, '{"format":', { mode: 0o600 }), /not JSON/],
    ['another boot', () => writeFileSync(file, JSON.stringify({ ...valid, bootId: 'another-boot' }), { mode: 0o600 }), /another boot/],
    ['a bad entry', () => writeFileSync(file, JSON.stringify({ ...valid, partitions: [['../x', '1', '2']] }), { mode: 0o600 }), /malformed/],
    ['mode 0644', () => { writeFileSync(file, JSON.stringify(valid)); chmodSync(file, 0o644); }, /mode 0644/],
    ['owned by nobody', () => { writeFileSync(file, JSON.stringify(valid), { mode: 0o600 }); chownSync(file, 65534, 65534); }, /owned by uid 65534/],
  ];
  for (const [what, spoil, why] of cases) {
    spoil();
    const { log, lines } = capturingLog();
    const loaded = PartitionProvenance.inDirectory(dir, log);
    t.is(loaded.size, 0, `${what}: nothing trusted`);
    const warning = lines.find((l) => l.msg === 'ignoring the partition provenance file');
    t.truthy(warning, `${what}: a warning`);
    t.regex(String(warning?.why), why, what);
    chownSync(file, 0, 0);
  }
  // Control: the valid file again is trusted.
  writeFileSync(file, JSON.stringify(valid), { mode: 0o600 });
  chmodSync(file, 0o600);
  t.true(PartitionProvenance.inDirectory(dir, capturingLog().log).allows('loop7p1', 1234n, 42n));
});

test('provenance: a runtime directory others can write, owned by another user, or a symlink is refused; so is the daemon start', (t) => {
  if (!needsRoot(t)) return;
  const base = tempDir(t, 'diskseqd-provenance-dirs-');
  const open = join(base, 'open');
  mkdirSync(open, { mode: 0o777 });
  chmodSync(open, 0o1777);
  t.throws(() => PartitionProvenance.inDirectory(open, capturingLog().log), { message: /writable by others \(mode 1777\)/ });
  const foreign = join(base, 'foreign');
  mkdirSync(foreign, { mode: 0o700 });
  chownSync(foreign, 65534, 65534);
  t.throws(() => PartitionProvenance.inDirectory(foreign, capturingLog().log), { message: /owned by uid 65534/ });
  const link = join(base, 'link');
  symlinkSync(foreign, link);
  t.throws(() => PartitionProvenance.inDirectory(link, capturingLog().log), { message: /not a directory/ });

  const [node, ...argv] = daemonArgv('--socket', join(base, 'd.sock'), '--runtime-dir', open);
  const result = spawnSync(node!, argv, { encoding: 'utf8', timeout: 30_000 });
  t.is(result.status, 1, result.stdout);
  t.regex(result.stderr, /^diskseqd: runtime directory .*open is writable by others/m);
  t.false(existsSync(join(base, 'd.sock')), 'nothing was served');
});

test('provenance: bounded — beyond MAX_ENTRIES new partitions are not recorded (and so not admitted)', (t) => {
  const { log, lines } = capturingLog();
  const dir = runtimeDir(t);
  const provenance = PartitionProvenance.inDirectory(dir, log);
  for (let i = 0; i < MAX_ENTRIES + 10; i++) provenance.recordAdd(`loop${i}p1`, BigInt(i + 1), 7n);
  t.is(provenance.size, MAX_ENTRIES);
  t.true(provenance.allows('loop0p1', 1n, 7n));
  t.false(provenance.allows(`loop${MAX_ENTRIES}p1`, BigInt(MAX_ENTRIES + 1), 7n));
  t.is(lines.filter((l) => l.msg === 'partition provenance is full; new loop partitions are not served').length, 1, 'said once');
  provenance.save();
  t.is(PartitionProvenance.inDirectory(dir, capturingLog().log).size, MAX_ENTRIES, 'a full file loads again');
});
