/**
 * A list in insertion order whose members link to each other, for work in flight that is
 * added and removed once per request. Not a Set: V8 gives a Set a new hash table as entries
 * come and go, and the table it replaces keeps a pointer to its successor (for iterators
 * that are still on it). A full collection moves the table in use, with everything else
 * alive, to the old generation; once that table is replaced it is garbage there, but until
 * the next full collection every scavenge treats its pointer as live. So the successor
 * survives and is promoted, then its own successor, and each table's entries with it —
 * here, every request's job record and, through its promise, the request's whole graph
 * (docs/design.md, "Memory"). A removed member here keeps no pointer to the list or to
 * another member.
 */

/** A member's links; only the list sets them. */
export interface Linked<T> {
  prev: T | undefined;
  next: T | undefined;
}

export class InsertionList<T extends Linked<T>> {
  private head: T | undefined;
  private tail: T | undefined;
  private count = 0;

  /** Members now. */
  get size(): number {
    return this.count;
  }

  /** Adds `item`, which must not be a member, at the end. */
  add(item: T): void {
    item.prev = this.tail;
    item.next = undefined;
    if (this.tail === undefined) this.head = item;
    else this.tail.next = item;
    this.tail = item;
    this.count++;
  }

  /** Removes `item` if it is a member; returns whether it was. */
  delete(item: T): boolean {
    if (item.prev === undefined && this.head !== item) return false;
    if (item.prev === undefined) this.head = item.next;
    else item.prev.next = item.next;
    if (item.next === undefined) this.tail = item.prev;
    else item.next.prev = item.prev;
    item.prev = undefined;
    item.next = undefined;
    this.count--;
    return true;
  }

  /** Members, oldest first; the member just yielded may be deleted before the next. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let item = this.head; item !== undefined;) {
      const next = item.next;
      yield item;
      item = next;
    }
  }
}
