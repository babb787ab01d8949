/**
 * Driver names of block majors (src/sysfs.ts, driverOf): read from /proc/devices; a major
 * it does not name makes it look again — a driver may have registered since — but not on
 * every call, so a scan of thousands of such devices reads the file once, not per device.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { Sysfs } from '../src/sysfs.js';
import { sleep, tempDir } from '../testkit/cleanup.js';

test('driverOf: known majors by name; an unknown major is looked up again only after a second', async (t) => {
  const dir = tempDir(t, 'diskseqd-drivers-');
  const procDevices = join(dir, 'devices');
  writeFileSync(procDevices, 'Character devices:\n  1 mem\n\nBlock devices:\n  7 loop\n253 device-mapper\n');
  const sysfs = new Sysfs(dir, procDevices);
  t.is(sysfs.driverOf(7), 'loop');
  t.is(sysfs.driverOf(253), 'device-mapper');
  t.is(sysfs.driverOf(1), 'major-1', 'a character major is no block driver');
  t.is(sysfs.driverOf(250), 'major-250');
  appendFileSync(procDevices, '250 newdrv\n');
  t.is(sysfs.driverOf(250), 'major-250', 'not looked up again at once');
  await sleep(1100);
  t.is(sysfs.driverOf(250), 'newdrv', 'looked up again after the recheck period');
});
