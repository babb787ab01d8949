// The list DeviceWork keeps its jobs and waiters in (src/insertion-list.ts): insertion
// order, removal of any member, and a removed member left with no links at all.
import test from 'ava';
import { InsertionList, type Linked } from '../src/insertion-list.js';

interface Item extends Linked<Item> {
  name: string;
}

const item = (name: string): Item => ({ name, prev: undefined, next: undefined });
const names = (list: InsertionList<Item>): string[] => [...list].map((i) => i.name);

test('members come out oldest first, and any of them can be removed', (t) => {
  const list = new InsertionList<Item>();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(item) as [Item, Item, Item, Item];
  for (const i of [a, b, c, d]) list.add(i);
  t.deepEqual(names(list), ['a', 'b', 'c', 'd']);
  t.is(list.size, 4);
  t.true(list.delete(b)); // a middle one
  t.deepEqual(names(list), ['a', 'c', 'd']);
  t.true(list.delete(a)); // the oldest
  t.true(list.delete(d)); // the newest
  t.deepEqual(names(list), ['c']);
  t.is(list.size, 1);
  list.add(a);
  t.deepEqual(names(list), ['c', 'a']);
});

test('removing a member that is not there changes nothing', (t) => {
  const list = new InsertionList<Item>();
  const [a, b] = [item('a'), item('b')];
  list.add(a);
  t.false(list.delete(b));
  t.true(list.delete(a));
  t.false(list.delete(a)); // twice
  t.is(list.size, 0);
  t.deepEqual(names(list), []);
});

test('a removed member keeps no link to the list or to another member', (t) => {
  const list = new InsertionList<Item>();
  const all = ['a', 'b', 'c'].map(item);
  for (const i of all) list.add(i);
  for (const i of all) {
    list.delete(i);
    t.is(i.prev, undefined, i.name);
    t.is(i.next, undefined, i.name);
  }
});

test('the member just yielded may be removed while iterating', (t) => {
  const list = new InsertionList<Item>();
  for (const name of ['a', 'b', 'c', 'd']) list.add(item(name));
  const seen: string[] = [];
  for (const i of list) {
    seen.push(i.name);
    if (i.name === 'a' || i.name === 'c') list.delete(i);
  }
  t.deepEqual(seen, ['a', 'b', 'c', 'd']);
  t.deepEqual(names(list), ['b', 'd']);
});
