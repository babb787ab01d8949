/**
 * Requests answered (or abandoned by their client) since the start, over both front-ends:
 * what the status view and systemd's STATUS= line report. One tally, so that a request
 * counts once whichever socket it came in on.
 */
export class RequestTally {
  /** Requests in all. */
  total = 0;
  /** The same by op ('open', 'list', ...), then by the code of their audit line ('OK', 'NOT_FOUND', ...). */
  readonly byOutcome = new Map<string, Map<string, number>>();

  /** One request of `op` ended with audit code `code`. */
  count(op: string, code: string): void {
    this.total++;
    let codes = this.byOutcome.get(op);
    if (codes === undefined) this.byOutcome.set(op, (codes = new Map()));
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
}
