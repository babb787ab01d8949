/**
 * JSON.parse keeps the last of two equal keys in an object and says nothing, so a policy
 * with `"access"` written twice would silently use one of them. This scan finds the first
 * duplicate key in text that JSON.parse has already accepted (so it need not handle
 * malformed input) and reports where it is.
 */

/** Where a duplicate key is: its path (keys and array indices) and line number. */
export interface DuplicateKey {
  /** Path of the object holding the key, e.g. ['rules', 3, 'device']. */
  path: Array<string | number>;
  key: string;
  line: number;
}

type Frame = { kind: 'object'; keys: Set<string>; key?: string } | { kind: 'array'; index: number };

/** The first duplicate object key in valid JSON text, or undefined. */
export function findDuplicateKey(text: string): DuplicateKey | undefined {
  const stack: Frame[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      line++;
      i++;
    } else if (c === '"') {
      const end = endOfString(text, i);
      const top = stack.at(-1);
      if (top?.kind === 'object' && nextNonSpace(text, end) === ':') {
        const key = JSON.parse(text.slice(i, end)) as string;
        if (top.keys.has(key)) return { path: pathOf(stack), key, line };
        top.keys.add(key);
        top.key = key;
      }
      i = end;
    } else if (c === '{') {
      stack.push({ kind: 'object', keys: new Set() });
      i++;
    } else if (c === '[') {
      stack.push({ kind: 'array', index: 0 });
      i++;
    } else if (c === '}' || c === ']') {
      stack.pop();
      i++;
    } else if (c === ',') {
      const top = stack.at(-1);
      if (top?.kind === 'array') top.index++;
      i++;
    } else {
      i++;
    }
  }
  return undefined;
}

/** Index just past the closing quote of the string starting at text[start] === '"'. */
function endOfString(text: string, start: number): number {
  let i = start + 1;
  while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
  return i + 1;
}

function nextNonSpace(text: string, from: number): string | undefined {
  let i = from;
  while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  return text[i];
}

/** The path to the innermost container: each object frame contributes the key being read. */
function pathOf(stack: Frame[]): Array<string | number> {
  const path: Array<string | number> = [];
  for (let depth = 0; depth < stack.length - 1; depth++) {
    const frame = stack[depth];
    path.push(frame.kind === 'array' ? frame.index : frame.key!);
  }
  return path;
}
