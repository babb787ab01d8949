/** Policy globs: syntax, matching, malformed patterns, and linear-time matching. */
import test from 'ava';
import { compileGlob, GlobSyntaxError } from '../src/policy/index.js';

const matching: Array<[pattern: string, text: string, expected: boolean]> = [
  ['loop3', 'loop3', true],
  ['loop3', 'loop30', false],
  ['loop*', 'loop', true],
  ['loop*', 'loop12p3', true],
  ['loop*', 'xloop1', false],
  ['*p[0-9]', 'loop3p1', true],
  ['*p[0-9]', 'loop3p12', false],
  ['*p[0-9]*', 'loop3p12', true],
  ['sd?', 'sda', true],
  ['sd?', 'sd', false],
  ['sd?', 'sdaa', false],
  ['sd[abc]', 'sdb', true],
  ['sd[abc]', 'sdd', false],
  ['sd[!abc]', 'sdd', true],
  ['sd[^abc]', 'sda', false],
  ['sd[a-cx-z]', 'sdy', true],
  ['sd[a-cx-z]', 'sdm', false],
  ['[-a]', '-', true],
  ['[a-]', '-', true],
  ['[\\]]', ']', true],
  ['[\\!a]', '!', true],
  ['\\*', '*', true],
  ['\\*', 'x', false],
  ['\\[x]', '[x]', true],
  ['a\\?', 'a?', true],
  ['a\\?', 'ab', false],
  ['*', '', true],
  ['*', '/srv/images/vm.img', true],
  ['/srv/*.img', '/srv/a/b.img', true],
  ['', '', true],
  ['', 'a', false],
  ['*a*b*', 'xxaxxbxx', true],
  ['*a*b', 'ba', false],
  ['**x', 'x', true],
  ['Qubes*', 'qubes', false],
  ['é?', 'éü', true],
  ['?', '😀', true],
  ['[😀-😂]', '😁', true],
  ['qubes_dom0-vm--*', 'qubes_dom0-vm--work--private', true],
  ['qubes_dom0-vm--*', 'qubes_dom0-root', false],
];

for (const [pattern, text, expected] of matching) {
  test(`glob: ${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(text)}`, (t) => {
    const glob = compileGlob(pattern);
    t.is(glob.source, pattern);
    t.is(glob.matches(text), expected);
  });
}

const malformed: Array<[pattern: string, message: RegExp]> = [
  ['loop[0-9', /^unclosed "\["/],
  ['[', /^unclosed "\["/],
  ['[!', /^unclosed "\["/],
  ['[\\]', /^unclosed "\["/],
  ['sd[]', /^empty character class "\[\]"/],
  ['sd[!]', /^empty character class "\[\]"/],
  ['x\\', /^trailing backslash/],
  ['[a\\', /^trailing backslash/],
  ['[z-a]', /^reversed range "z-a"/],
  ['[[:digit:]]', /^character class names like \[:digit:\] are not supported/],
  ['a'.repeat(4097), /^pattern longer than 4096 characters$/],
];

for (const [pattern, message] of malformed) {
  test(`glob: ${JSON.stringify(pattern.slice(0, 20))} is rejected`, (t) => {
    const error = t.throws(() => compileGlob(pattern), { instanceOf: GlobSyntaxError });
    t.regex(error!.message, message);
  });
}

test('glob: patterns that make backtracking regexps explode still answer (worst case is pattern x text)', (t) => {
  // With a translated RegExp (^.*a.*a.*a...b$) this is O(n^k) and would not finish.
  const glob = compileGlob('*a*a*a*a*a*a*a*a*a*a*b');
  t.false(glob.matches('a'.repeat(4096)));
  t.true(glob.matches('a'.repeat(4096) + 'b'));
  const classes = compileGlob('*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*!');
  t.false(classes.matches('x'.repeat(4096)));
});
