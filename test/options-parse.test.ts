/**
 * The daemon's own command-line reader (src/options.ts, parseOptions) reads every line that
 * node:util's strict parseArgs accepts exactly as parseArgs does: it replaced parseArgs to
 * spare every start the compile of Node's parser. Random lines over the real option table,
 * with flags, string options in both spellings, values that look like options, repeats,
 * positionals and `--`.
 */
import test from 'ava';
import { parseArgs } from 'node:util';
import { cacheDirOf, DEFAULT_CACHE_DIR, OPTIONS, parseOptions } from '../src/options.js';

const NAMES = Object.keys(OPTIONS) as (keyof typeof OPTIONS)[];
const VALUES = ['x', '', '/run/a=b', '-', '--', '-v', '--socket', 'a b', '0'];

/** A small deterministic generator (xorshift), so that a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

function line(next: () => number): string[] {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const argv: string[] = [];
  const count = Math.floor(next() * 7);
  for (let i = 0; i < count; i++) {
    const roll = next();
    const name = pick(NAMES);
    if (roll < 0.1) argv.push(pick(['--', 'positional', '-']));
    else if (OPTIONS[name].type === 'boolean') argv.push(`--${name}`);
    else if (roll < 0.55) argv.push(`--${name}=${pick(VALUES)}`);
    else argv.push(`--${name}`, pick(VALUES));
  }
  return argv;
}

test('every line strict parseArgs accepts reads the same, values and positionals', (t) => {
  const next = random(20261202);
  let compared = 0;
  for (let i = 0; i < 20_000; i++) {
    const argv = line(next);
    let expected;
    try {
      expected = parseArgs({ args: argv, strict: true, allowPositionals: true, options: OPTIONS });
    } catch {
      continue; // config.ts's own check rejects such lines before they are read
    }
    compared++;
    const actual = parseOptions(argv);
    if (JSON.stringify({ ...actual.values }) !== JSON.stringify({ ...expected.values }) || JSON.stringify(actual.positionals) !== JSON.stringify(expected.positionals)) {
      t.fail(`${JSON.stringify(argv)}: ${JSON.stringify(actual)} against ${JSON.stringify({ values: { ...expected.values }, positionals: expected.positionals })}`);
      return;
    }
  }
  t.true(compared > 5_000, `${compared} lines compared`);
});

test('cacheDirOf: the last --cache-dir in either spelling; the default for none, an empty one, or one without a value', (t) => {
  t.is(cacheDirOf([]), DEFAULT_CACHE_DIR);
  t.is(cacheDirOf(['--cache-dir', '/a', '--socket', '/s', '--cache-dir=/b']), '/b');
  t.is(cacheDirOf(['--cache-dir=']), DEFAULT_CACHE_DIR);
  t.is(cacheDirOf(['--socket', '--cache-dir', '/c']), DEFAULT_CACHE_DIR, '--socket takes the next argument as its value');
  t.is(cacheDirOf(['--cache-dir']), DEFAULT_CACHE_DIR);
  t.is(cacheDirOf(['--', '--cache-dir', '/d']), DEFAULT_CACHE_DIR, 'after -- everything is positional');
  t.is(cacheDirOf(['--unknown', '--cache-dir=/e', 'x']), '/e');
});
