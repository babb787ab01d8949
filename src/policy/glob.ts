/**
 * Shell-style globs for policy rules (kernel names, attribute values).
 *
 * Syntax: `*` any run of characters (including none, and including `/`), `?` one
 * character, `[...]` one character from a class (`a-z` ranges, `!` or `^` first negates),
 * `\x` the character x literally (also inside a class). Matching is case-sensitive and
 * anchored at both ends.
 *
 * Patterns come from a root-owned file, but they are still compiled to a token list and
 * matched by the two-pointer wildcard algorithm rather than translated to a RegExp: a
 * pattern like `*a*a*a*a*b` makes a backtracking RegExp take O(n^k) on a long attribute
 * value, while this matcher is O(pattern length x text length) whatever the pattern.
 */

/** One element of a compiled glob. */
type Token =
  | { kind: 'literal'; codePoint: number }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'class'; negated: boolean; ranges: ReadonlyArray<readonly [number, number]> };

/** Thrown by compileGlob for a malformed pattern; the message says what is wrong. */
export class GlobSyntaxError extends Error {
  override name = 'GlobSyntaxError';
}

/** A compiled glob. */
export interface Glob {
  /** The pattern as written. */
  readonly source: string;
  /** The literal text every match starts with (up to the first wildcard), e.g. "loop" for `loop*`. */
  readonly literalPrefix: string;
  /** True when the whole of text matches the pattern. */
  matches(text: string): boolean;
}

/** Longest pattern accepted; far beyond any sensible device name or attribute value. */
export const MAX_GLOB_LENGTH = 4096;

/**
 * Compile a glob. Throws GlobSyntaxError for an unclosed `[`, an empty class (`[]`, `[!]`),
 * a reversed range (`[z-a]`), a POSIX class name (`[[:digit:]]`, not supported), a
 * trailing backslash, or a pattern longer than MAX_GLOB_LENGTH.
 */
export function compileGlob(pattern: string): Glob {
  if (pattern.length > MAX_GLOB_LENGTH) {
    throw new GlobSyntaxError(`pattern longer than ${MAX_GLOB_LENGTH} characters`);
  }
  const tokens = tokenize(Array.from(pattern, (c) => c.codePointAt(0)!));
  const firstWildcard = tokens.findIndex((t) => t.kind !== 'literal');
  const literalPrefix = literalText(firstWildcard < 0 ? tokens : tokens.slice(0, firstWildcard));
  if (firstWildcard < 0) {
    // Most patterns in practice are plain names: compare strings directly.
    return { source: pattern, literalPrefix, matches: (text) => text === literalPrefix };
  }
  return { source: pattern, literalPrefix, matches: (text) => matchTokens(tokens, text) };
}

function literalText(tokens: Token[]): string {
  return String.fromCodePoint(...tokens.map((t) => (t as { codePoint: number }).codePoint));
}

const BACKSLASH = 0x5c;
const OPEN = 0x5b;
const CLOSE = 0x5d;

function tokenize(cps: number[]): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < cps.length) {
    const c = cps[i];
    if (c === 0x2a /* * */) {
      // Consecutive stars are one star; keeps the token list short.
      if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
      i++;
    } else if (c === 0x3f /* ? */) {
      tokens.push({ kind: 'any' });
      i++;
    } else if (c === BACKSLASH) {
      if (i + 1 >= cps.length) throw new GlobSyntaxError('trailing backslash (escape of nothing)');
      tokens.push({ kind: 'literal', codePoint: cps[i + 1] });
      i += 2;
    } else if (c === OPEN) {
      const [token, next] = parseClass(cps, i);
      tokens.push(token);
      i = next;
    } else {
      tokens.push({ kind: 'literal', codePoint: c });
      i++;
    }
  }
  return tokens;
}

/** Parse the class starting at cps[start] === '['; returns the token and the index after ']'. */
function parseClass(cps: number[], start: number): [Token, number] {
  let i = start + 1;
  let negated = false;
  if (cps[i] === 0x21 /* ! */ || cps[i] === 0x5e /* ^ */) {
    negated = true;
    i++;
  }
  const ranges: Array<readonly [number, number]> = [];
  // A `]` always closes the class (write `\]` for the character): so `[]` is an error
  // rather than the start of a class containing `]`.
  const readChar = (): number => {
    if (cps[i] === BACKSLASH) {
      if (i + 1 >= cps.length) throw new GlobSyntaxError('trailing backslash (escape of nothing)');
      i += 2;
      return cps[i - 1];
    }
    return cps[i++];
  };
  while (i < cps.length && cps[i] !== CLOSE) {
    if (cps[i] === OPEN && cps[i + 1] === 0x3a /* : */) {
      throw new GlobSyntaxError('character class names like [:digit:] are not supported; write a range such as 0-9');
    }
    const lo = readChar();
    if (cps[i] === 0x2d /* - */ && i + 1 < cps.length && cps[i + 1] !== CLOSE) {
      i++;
      const hi = readChar();
      if (hi < lo) {
        throw new GlobSyntaxError(`reversed range "${String.fromCodePoint(lo)}-${String.fromCodePoint(hi)}" in [...]`);
      }
      ranges.push([lo, hi]);
    } else {
      ranges.push([lo, lo]);
    }
  }
  if (i >= cps.length) throw new GlobSyntaxError('unclosed "[" (escape a literal bracket with a backslash)');
  if (ranges.length === 0) throw new GlobSyntaxError('empty character class "[]" (escape a literal bracket with a backslash)');
  return [{ kind: 'class', negated, ranges }, i + 1];
}

function matchOne(token: Token, cp: number): boolean {
  switch (token.kind) {
    case 'literal':
      return token.codePoint === cp;
    case 'any':
      return true;
    case 'class': {
      const inClass = token.ranges.some(([lo, hi]) => cp >= lo && cp <= hi);
      return inClass !== token.negated;
    }
    case 'star':
      return false; // handled by the caller
  }
}

/**
 * Classic wildcard matching: on a mismatch, go back to just after the most recent star
 * and let that star swallow one more character. Earlier stars never need revisiting, so
 * the work is bounded by tokens.length * text length.
 */
function matchTokens(tokens: Token[], text: string): boolean {
  const cps = Array.from(text, (c) => c.codePointAt(0)!);
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < cps.length) {
    if (p < tokens.length && tokens[p].kind === 'star') {
      starP = p++;
      starT = t;
    } else if (p < tokens.length && matchOne(tokens[p], cps[t])) {
      p++;
      t++;
    } else if (starP >= 0) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (p < tokens.length && tokens[p].kind === 'star') p++;
  return p === tokens.length;
}
