// The man pages, built from docs/man/*.scd by scdoc at build time (npm run build), say
// what the programs do: every option of `diskseq-open --help` and of `diskseqd --help` is
// in the page, the exit statuses are, every policy field and attribute key is in
// diskseqd-policy(5), and its example is a valid policy. package.json links them and the
// tarball carries them (the global install test finds them under share/man).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ATTRIBUTE_KEYS } from '../proto/attribute-keys.js';
import { Policy } from '../src/policy/index.js';
import { accountFiles } from './helpers/policy-fixtures.js';
import { DAEMON_SCRIPT, REPO_ROOT } from '../testkit/repo.js';
import { runCli } from './helpers/cli.js';

const PAGES = { 'diskseq-open': '1', diskseqd: '8', 'diskseqd-policy': '5' } as const;

/** A built page as plain text: roff requests and font escapes dropped. */
function page(name: keyof typeof PAGES): string {
  const roff = readFileSync(join(REPO_ROOT, 'dist', 'man', `${name}.${PAGES[name]}`), 'utf8');
  return roff.split('\n').filter((line) => !line.startsWith('.\\"')).join('\n')
    .replace(/\\f[BIRP]/g, '').replace(/\\&/g, '').replace(/\\-/g, '-').replace(/\\e/g, '\\').replace(/\\\(aq|\\\*\(Aq/g, "'");
}

/** The long options a --help text lists. */
function longOptions(help: string): string[] {
  return [...new Set([...help.matchAll(/(?<![\w-])--[a-z][a-z-]+/g)].map((m) => m[0]))];
}

test('the three pages are built, with their name and section, and package.json links them', (t) => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { man: string[]; files: string[] };
  for (const [name, section] of Object.entries(PAGES)) {
    const file = join(REPO_ROOT, 'dist', 'man', `${name}.${section}`);
    t.true(existsSync(file), file);
    t.regex(readFileSync(file, 'utf8'), new RegExp(`^\\.TH "${name}" "${section}"`, 'm'));
    t.true(pkg.man.includes(`./dist/man/${name}.${section}`), `package.json man: ${name}.${section}`);
  }
  t.true(pkg.files.includes('dist/man/'));
});

test('diskseq-open(1) has every option of --help, short forms, the exit statuses and the environment', async (t) => {
  const help = (await runCli(['--help'])).stdout;
  const text = page('diskseq-open');
  const options = longOptions(help);
  t.true(options.length >= 20, options.join(' '));
  for (const option of options) t.true(text.includes(option), option);
  for (const short of ['-h, --help', '-V, --version', '-l, --list', '-J, --json', '-b, --bytes', '-n, --noheadings', '-o, --output', '-w, --rw', '-x, --exclusive', '-e, --expect']) {
    t.true(text.includes(short), short);
  }
  t.regex(text, /EXIT STATUS[\s\S]*\n125\n[\s\S]*\n126\n[\s\S]*\n127\n/);
  for (const name of ['DISKSEQD_SOCKET', 'DISKSEQ_PRELOAD_DEBUG', '--disable-locks', '{3} {4}']) t.true(text.includes(name), name);
});

test('diskseqd(8) has every option of diskseqd --help', (t) => {
  const help = execFileSync(process.execPath, [DAEMON_SCRIPT, '--help'], { encoding: 'utf8' });
  const text = page('diskseqd');
  const options = longOptions(help);
  t.true(options.length >= 15, options.join(' '));
  for (const option of options) t.true(text.includes(option), option);
});

test('diskseqd-policy(5) names every field of docs/policy.md and every attribute key; its example is a valid policy', (t) => {
  const text = page('diskseqd-policy');
  const doc = readFileSync(join(REPO_ROOT, 'docs', 'policy.md'), 'utf8');
  const fields = [...doc.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]!);
  t.true(fields.length >= 17, fields.join(' '));
  for (const field of fields) t.true(text.includes(field), field);
  for (const key of ATTRIBUTE_KEYS) t.true(text.includes(key), key);
  const example = /EXAMPLE[\s\S]*?\n(\{\n[\s\S]*?\n\})\n/.exec(text)?.[1];
  t.truthy(example, 'the page has a JSON example');
  t.notThrows(() => Policy.fromJSON(example!, 'diskseqd-policy(5) example', accountFiles(t)));
});
