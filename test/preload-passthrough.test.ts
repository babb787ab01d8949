/**
 * Paths outside /dev/disk/by-diskseq/ behave exactly as without the shim: the same
 * results, errno values and side effects for the interposed functions, and the same
 * output from tools doing ordinary file I/O (docs/preload.md, "Which paths").
 */
import test from 'ava';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildProbe, probe, run } from '../testkit/preload.js';
import { tempDir } from '../testkit/cleanup.js';
import { needsRootAndShim } from './helpers/ci.js';

test('the interposed functions give identical answers for paths outside the namespace', (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-pass-');
  const probePath = buildProbe(dir);
  const work = join(dir, 'work');
  // inspect has side effects (O_CREAT on a missing path, O_TRUNC): a fresh tree per run.
  const fresh = (): void => {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work);
    writeFileSync(join(work, 'file'), 'some ordinary file content\n');
    mkdirSync(join(work, 'sub'));
    symlinkSync('file', join(work, 'link'));
    symlinkSync('missing-target', join(work, 'dangling'));
  };
  const paths = ['file', 'sub', 'link', 'dangling', 'missing', 'file/below'].map((p) => join(work, p))
    // Never a real system file: inspect opens with O_CREAT and O_TRUNC.
    .concat(['/dev/null', '/proc/self/exe/x']);
  // Without a daemon: the shim must never need it for these paths.
  const socket = join(dir, 'no-daemon.sock');
  for (const path of paths) {
    fresh();
    const plain = probe(probePath, ['inspect', path], { shim: false });
    fresh();
    const shimmed = probe(probePath, ['inspect', path], { socket });
    t.deepEqual(shimmed, plain, path);
  }
  for (const flags of [['rdonly'], ['wronly', 'creat', 'excl'], ['rdwr', 'directory'], ['rdonly', 'path'], ['wronly', 'creat', 'trunc', 'cloexec']]) {
    for (const path of [join(work, 'file'), join(work, 'sub'), join(work, 'new'), '/dev/null']) {
      fresh();
      const plain = probe(probePath, ['open', path, ...flags], { shim: false });
      fresh();
      const shimmed = probe(probePath, ['open', path, ...flags], { socket });
      t.deepEqual(shimmed, plain, `${path} ${flags.join('|')}`);
    }
  }
});

test('ordinary tools doing file I/O produce the same output with the shim', (t) => {
  if (!needsRootAndShim(t)) return;
  const dir = tempDir(t, 'diskseqd-preload-tools-pass-');
  const work = join(dir, 'work');
  const script = [
    'set -e',
    `cd ${work}`,
    'printf "line one\\nline two\\n" > a.txt',
    'cat a.txt a.txt > b.txt',
    'cp b.txt c.txt && sha256sum a.txt b.txt c.txt',
    'dd if=b.txt of=d.bin bs=7 count=2 status=none && od -c d.bin',
    'ln -s c.txt link && readlink link && realpath link && stat -c "%s %F %h" a.txt link',
    'mkdir -p deep/er && touch deep/er/f && find . -type f | sort',
    'test -r a.txt && test ! -e nope && echo tests-ok',
    'cat nope 2>&1 || echo "cat-status $?"',
    'exec 3<>e.txt && echo via-fd3 >&3 && exec 3>&- && cat e.txt',
  ].join('\n');
  const once = (shim: boolean): { status: number | null; out: string; err: string } => {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work);
    const r = run('sh', ['-c', script], { shim, socket: join(dir, 'no-daemon.sock') });
    return { status: r.status, out: r.stdout.toString(), err: r.stderr };
  };
  const plain = once(false);
  t.is(plain.status, 0, plain.err);
  t.true(plain.out.includes('tests-ok'));
  t.deepEqual(once(true), plain);
});
