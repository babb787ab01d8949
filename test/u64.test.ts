// The uint64 conversions between bigint and protobufjs's Long (proto/contract.ts), checked
// against Long's own decimal conversion at every boundary of the two 32-bit halves.
import test from 'ava';
import Long from 'long';
import { u64FromLong, u64ToLong } from '../proto/contract.js';

const EDGES = [0n, 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];

test('bigint to Long and back, by halves, agrees with Long\'s decimal conversion', (t) => {
  const values = [...EDGES];
  for (let i = 0; i < 200; i++) values.push(BigInt.asUintN(64, BigInt(Math.floor(Math.random() * 2 ** 32)) << BigInt(i % 33) ^ BigInt(i)));
  for (const value of values) {
    const long = u64ToLong(value);
    t.true(long.unsigned, `${value}: an unsigned Long`);
    t.is(long.toString(), value.toString(), `${value} to Long`);
    t.is(u64FromLong(Long.fromString(value.toString(), true)), value, `${value} from Long`);
    t.is(u64FromLong(long), value, `${value} round trip`);
  }
});

test('a missing field is 0; a small number (protobufjs without Long) is itself', (t) => {
  t.is(u64FromLong(null), 0n);
  t.is(u64FromLong(undefined), 0n);
  t.is(u64FromLong(4096), 4096n);
  // A signed Long with the top bit set is read as the same 64 bits, unsigned.
  t.is(u64FromLong(Long.fromString('-1', false)), 2n ** 64n - 1n);
});
