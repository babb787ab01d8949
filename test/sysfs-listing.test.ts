/**
 * The first scan reads the listing of every block device in slices (src/sysfs.ts,
 * blockDeviceNames; src/registry.ts): the same names as one readdirSync(), taken as they
 * are read, and the directory closed however the iteration ends.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { Sysfs } from '../src/sysfs.js';
import { tempDir } from '../testkit/cleanup.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** A sysfs root whose class/block lists `count` names (more than one buffer of the reader). */
function rootWith(dir: string, count: number): string {
  for (let i = 0; i < count; i++) mkdirSync(join(dir, 'class', 'block', `loop${i}`), { recursive: true });
  return dir;
}

test('blockDeviceNames: the names readdirSync gives, one listing counted', (t) => {
  const sysfs = new Sysfs(rootWith(tempDir(t, 'diskseqd-listing-'), 700));
  const taken = [...sysfs.blockDeviceNames()];
  t.is(taken.length, 700);
  t.deepEqual(taken.sort(), sysfs.listBlockDevices().sort());
  t.is(sysfs.counters.directoryListings, 2, 'one for each way of listing');
});

test('blockDeviceNames: the directory is open while names are taken, and closed when the caller stops early', (t) => {
  const sysfs = new Sysfs(rootWith(tempDir(t, 'diskseqd-listing-'), 300));
  const before = openFds();
  let during = 0;
  let taken = 0;
  for (const _name of sysfs.blockDeviceNames()) {
    during = openFds();
    if (++taken === 3) break;
  }
  t.is(during, before + 1, 'the listing holds one fd while it runs');
  t.is(openFds(), before, 'and none once the loop left it');
});
