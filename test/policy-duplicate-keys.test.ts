/** The duplicate-key scan that backs the "duplicate key" validation error. */
import test from 'ava';
import { findDuplicateKey } from '../src/policy/duplicate-keys.js';

test('duplicate keys: equal keys in different objects are not duplicates', (t) => {
  t.is(findDuplicateKey('{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}'), undefined);
});

test('duplicate keys: string values that look like keys or brackets are ignored', (t) => {
  t.is(findDuplicateKey('{"a": "a", "b": "\\"a\\": {[", "c": ["a", "a"]}'), undefined);
});

test('duplicate keys: escaped keys compare by value', (t) => {
  t.deepEqual(findDuplicateKey('{"x": {"\\u0061": 1, "a": 2}}'), { path: ['x'], key: 'a', line: 1 });
});

test('duplicate keys: the path counts array elements and lines are reported', (t) => {
  const text = '{"rules": [\n {"n": 1},\n {"n": 2, "d": {"k": [1, 2], "k": 3}}\n]}';
  t.deepEqual(findDuplicateKey(text), { path: ['rules', 1, 'd'], key: 'k', line: 3 });
});

test('duplicate keys: arrays inside arrays keep their own indices', (t) => {
  const text = '[[1, 2], [3, {"a": 1, "a": 2}]]';
  t.deepEqual(findDuplicateKey(text), { path: [1, 1], key: 'a', line: 1 });
});
