/**
 * The one results table of `npm run bench`: each row a figure of diskseqd next to the
 * floor it is judged against (measured in the same run), their ratio, and the goal. Rows
 * come from independent benchmarks (the C broker comparison, a hung device, startup,
 * memory...): each adds its own with add(), and render() prints them together.
 */

/** A goal on a row: how it reads, and whether the row meets it. */
export interface Goal {
  text: string;
  met(row: TableRow): boolean;
}

/** One row. `ratio` is value / floor when both are numbers, unless given. */
export interface TableRow {
  figure: string;
  /** What the floor is (e.g. 'C broker'), and its value. */
  floorName?: string;
  floor?: number;
  value: number;
  ratio?: number;
  goal?: Goal;
  /** Digits after the point for floor and value (default 1). */
  digits?: number;
}

/** Goal: ratio at most `limit` (times the floor). */
export function ratioAtMost(limit: number): Goal {
  return { text: `<= ${limit}x`, met: (row) => row.ratio !== undefined && row.ratio <= limit };
}

/** Goal: ratio at least `limit` (times the floor). */
export function ratioAtLeast(limit: number): Goal {
  return { text: `>= ${limit}x`, met: (row) => row.ratio !== undefined && row.ratio >= limit };
}

/** Goal: the value itself at most `limit` (in the row's unit). */
export function valueAtMost(limit: number, unit: string): Goal {
  return { text: `<= ${limit} ${unit}`, met: (row) => row.value <= limit };
}

export class ResultTable {
  private readonly rows: TableRow[] = [];

  constructor(readonly title: string) {}

  add(row: TableRow): void {
    const ratio = row.ratio ?? (row.floor !== undefined && row.floor !== 0 ? row.value / row.floor : undefined);
    this.rows.push({ ...row, ratio });
  }

  /** The table as Markdown (pipes), one row per figure, with a verdict per goal. */
  render(): string {
    const header = ['figure', 'floor', 'floor value', 'diskseqd', 'ratio', 'goal', 'met'];
    const lines = this.rows.map((row) => {
      const digits = row.digits ?? 1;
      return [
        row.figure,
        row.floorName ?? '',
        row.floor === undefined ? '' : row.floor.toFixed(digits),
        row.value.toFixed(digits),
        row.ratio === undefined ? '' : `${row.ratio.toFixed(2)}x`,
        row.goal?.text ?? '',
        row.goal === undefined ? '' : row.goal.met(row) ? 'yes' : 'NO',
      ];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
    const format = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
    return [
      this.title,
      '',
      format(header),
      `| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`,
      ...lines.map(format),
    ].join('\n');
  }
}
