/**
 * The per-uid shares of src/quotas.ts, without a daemon: a non-root uid gets at most its
 * per-uid bound, non-root uids together never root's share, root at most the total;
 * snapshot slots are waited for, in order per uid and the uids in turn; the unreceived-fd
 * ledger bounds each connection and re-reads the others' counts before refusing.
 */
import test from 'ava';
import { SlotQueue, UidShares, UnreceivedFds } from '../src/quotas.js';

test('a non-root uid gets its per-uid bound, non-root uids together the total less root\'s share, root the rest', (t) => {
  const shares = new UidShares('things', { total: 8, perUid: 3 }, 25); // root keeps 2
  t.is(shares.nonRootCap, 6);
  for (let i = 0; i < 3; i++) t.true(shares.tryTake(1000));
  t.false(shares.tryTake(1000));
  t.is(shares.refusal(1000), 'too many things of uid 1000 (limit 3)');
  for (let i = 0; i < 3; i++) t.true(shares.tryTake(1001));
  t.false(shares.tryTake(1002));
  t.is(shares.refusal(1002), 'too many things of non-root users (limit 6; the rest of 8 is kept for root)');
  t.true(shares.tryTake(0));
  t.true(shares.tryTake(0));
  t.false(shares.tryTake(0));
  t.is(shares.refusal(0), 'too many things (limit 8)');
  shares.give(1000);
  t.true(shares.tryTake(1002), 'what one non-root uid gives back is free for another');
  shares.give(1002);
  t.true(shares.tryTake(0), 'and for root, which only the total bounds');
  t.is(shares.used(), 8);
  t.false(shares.tryTake(1002));
  t.throws(() => shares.give(1003), { message: /gave back more than it had/ });
});

test('root is not bound per uid; a 0% share keeps nothing for it; a 99% share leaves non-root users what rounds down', (t) => {
  const none = new UidShares('things', { total: 4, perUid: 1 }, 0);
  t.is(none.nonRootCap, 4);
  for (let i = 0; i < 4; i++) t.true(none.tryTake(0));
  const most = new UidShares('things', { total: 4, perUid: 4 }, 99);
  t.is(most.nonRootCap, 1);
});

test('snapshot slots: waiters are served in order per uid, the uids in turn, and an aborted one gives up its place', async (t) => {
  const slots = new SlotQueue(new UidShares('snapshots', { total: 2, perUid: 2 }, 0));
  const order: string[] = [];
  const take = (uid: number, name: string, signal?: AbortSignal) =>
    slots.acquire(uid, signal).then((release) => {
      order.push(release === undefined ? `${name}:cancelled` : name);
      return release;
    });
  const a1 = await take(1, 'a1');
  const a2 = await take(1, 'a2');
  const waiting = [take(1, 'a3'), take(1, 'a4'), take(2, 'b1')];
  const abort = new AbortController();
  const cancelled = take(2, 'b2', abort.signal);
  t.is(slots.queued, 4);
  abort.abort();
  t.is(await cancelled, undefined);
  a1!();
  a1!(); // a release is given back once, however often it is called
  await new Promise((resolve) => setImmediate(resolve));
  a2!();
  await Promise.all(waiting.slice(0, 1).concat(waiting.slice(2)));
  t.deepEqual(order, ['a1', 'a2', 'b2:cancelled', 'a3', 'b1'], 'after a3, uid 2 has waited longest: b1 before a4');
  t.is(slots.queued, 1);
  t.is(slots.shares.used(), 2);
});

test('snapshot slots: a uid at its own bound waits while another is served', async (t) => {
  const slots = new SlotQueue(new UidShares('snapshots', { total: 4, perUid: 1 }, 0));
  const first = await slots.acquire(1);
  let secondOfUid1 = false;
  void slots.acquire(1).then(() => (secondOfUid1 = true));
  const other = await slots.acquire(2);
  t.truthy(other, 'uid 2 is not held up by uid 1\'s line');
  await new Promise((resolve) => setImmediate(resolve));
  t.false(secondOfUid1);
  first!();
  await new Promise((resolve) => setImmediate(resolve));
  t.true(secondOfUid1);
});

test('unreceived fds: a connection stops at its bound; a full uid share re-reads the uid\'s other connections first', (t) => {
  const ledger = new UnreceivedFds(new UidShares('fds', { total: 100, perUid: 10 }, 0), 4);
  const counts = [0, 0, 0];
  const accounts = counts.map((_, i) => ledger.account(1000, () => {
    // This connection's peer received everything: its count drops to 0.
    if (counts[i]! > 0) accounts[i]!.changed(-counts[i]!);
    counts[i] = 0;
  }));
  const send = (i: number): boolean => {
    if (!accounts[i]!.mayAdd(counts[i]!)) return false;
    counts[i]!++;
    accounts[i]!.changed(1);
    return true;
  };
  for (let n = 0; n < 4; n++) t.true(send(0));
  t.false(send(0), 'per connection: 4');
  for (let n = 0; n < 4; n++) t.true(send(1));
  t.true(send(2));
  t.true(send(2));
  t.is(ledger.shares.used(1000), 10);
  // The uid's share is full by the counts we have: the ledger asks the connections again,
  // they report what their peers received, and the fd may go.
  t.true(send(2), 'allowed once the connections were re-read');
  t.deepEqual(counts, [0, 0, 1]);
  t.is(ledger.shares.used(1000), 1);
  accounts.forEach((account) => account.close());
});
