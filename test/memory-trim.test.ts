/**
 * src/memory-trim.ts: activity arms one trim, however much of it there is; more activity
 * after the trim arms the next; an idle trimmer never fires; its timer never keeps a process
 * alive; and the native call it makes (malloc_trim) returns freed heap pages to the kernel.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { MemoryTrimmer } from '../src/memory-trim.js';
import { sleep } from '../testkit/cleanup.js';
import { REPO_ROOT } from '../testkit/repo.js';

/** Resolves once `condition` holds; fails the test after 10 s (a loaded machine, not a slow trimmer). */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(5);
  }
}

test('a burst of activity arms one trim, and activity after it the next', async (t) => {
  let trims = 0;
  const trimmer = new MemoryTrimmer(20, () => trims++);
  for (let i = 0; i < 1000; i++) trimmer.touch();
  t.is(trims, 0, 'never on the request path itself');
  await until(() => trims > 0);
  await sleep(100);
  t.is(trims, 1, 'one trim for the whole burst, none without activity after it');
  trimmer.touch();
  await until(() => trims > 1);
  t.is(trims, 2);
});

test('a pending trim does not keep the process alive', (t) => {
  // With a 60 s delay a referenced timer would hold the child for a minute; spawnSync's
  // timeout would then kill it and the status would be null.
  const script = `import('${REPO_ROOT}/dist/src/memory-trim.js').then(({ MemoryTrimmer }) => new MemoryTrimmer(60000, () => {}).touch())`;
  const child = spawnSync(process.execPath, ['-e', script], { timeout: 30_000, encoding: 'utf8' });
  t.is(child.status, 0, child.stderr);
});

test('trimMalloc gives the free pages in the middle of the heap back to the kernel', (t) => {
  // 400 buffers of 64 KiB (below glibc's mmap threshold: they come from the heap), each
  // followed by a small one that stays: once the large ones are freed, free() cannot return
  // them, since each hole has live memory above it. Only malloc_trim can.
  const script = `
    const { native } = await import('${REPO_ROOT}/dist/native/index.js');
    let large = [];
    const kept = [];
    for (let i = 0; i < 400; i++) {
      large.push(Buffer.allocUnsafeSlow(64 * 1024).fill(1));
      kept.push(Buffer.allocUnsafeSlow(200).fill(2));
    }
    large = null;
    globalThis.gc();
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 200)); // backing stores are freed after the collection
    const before = process.memoryUsage.rss();
    const released = native.trimMalloc();
    console.log(JSON.stringify({ before, after: process.memoryUsage.rss(), released, kept: kept.length }));`;
  const child = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { timeout: 60_000, encoding: 'utf8' });
  t.is(child.status, 0, child.stderr);
  const { before, after, released } = JSON.parse(child.stdout) as { before: number; after: number; released: boolean };
  t.true(released);
  t.true(before - after > 10 * 2 ** 20, `resident ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB`);
});
