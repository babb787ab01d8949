/**
 * Parsing kernel uevents (src/uevents.ts): block disk and partition events come through
 * with their sysfs name; anything else (other subsystems, libudev's messages, malformed
 * datagrams) is ignored rather than misread.
 */
import test from 'ava';
import { parseBlockUevent } from '../src/uevents.js';

const message = (...fields: string[]): Buffer => Buffer.from(fields.join('\0') + '\0');

test('a block disk change and a partition add give the sysfs name, kind and DISKSEQ', (t) => {
  t.deepEqual(parseBlockUevent(message('change@/devices/virtual/block/loop3', 'ACTION=change',
    'DEVPATH=/devices/virtual/block/loop3', 'SUBSYSTEM=block', 'DEVNAME=loop3', 'DEVTYPE=disk', 'DISKSEQ=42', 'SEQNUM=7')),
  { action: 'change', name: 'loop3', isPartition: false, diskseq: 42n });
  t.deepEqual(parseBlockUevent(message('add@/devices/virtual/block/loop3/loop3p1', 'ACTION=add',
    'DEVPATH=/devices/virtual/block/loop3/loop3p1', 'SUBSYSTEM=block', 'DEVTYPE=partition', 'PARTN=1', 'DISKSEQ=42')),
  { action: 'add', name: 'loop3p1', isPartition: true, diskseq: 42n });
  t.like(parseBlockUevent(message('add@/devices/virtual/block/loop3/loop3p1', 'SUBSYSTEM=block', 'DEVTYPE=partition', 'DISKSEQ=4x2')),
    { isPartition: true, diskseq: null }, 'a malformed DISKSEQ is no diskseq');
});

test('other subsystems, libudev messages and malformed datagrams are ignored', (t) => {
  t.is(parseBlockUevent(message('add@/devices/virtual/net/lo', 'ACTION=add', 'DEVPATH=/devices/virtual/net/lo', 'SUBSYSTEM=net')), null);
  t.is(parseBlockUevent(Buffer.concat([Buffer.from('libudev\0'), Buffer.alloc(32)])), null);
  t.is(parseBlockUevent(message('change', 'SUBSYSTEM=block', 'DEVTYPE=disk')), null, 'no action@devpath header');
  t.is(parseBlockUevent(message('change@/x/..', 'SUBSYSTEM=block', 'DEVPATH=/x/..', 'DEVTYPE=disk')), null, 'a devpath ending in ..');
  t.is(parseBlockUevent(message('change@/devices/virtual/block/loop3', 'SUBSYSTEM=block', 'DEVPATH=/devices/virtual/block/loop3')), null, 'no DEVTYPE');
  t.is(parseBlockUevent(Buffer.alloc(0)), null);
});
