// Bundles the compiled daemon (dist/src/main.js and everything it imports, protobufjs and
// long included) into one CommonJS file, dist/bundle/diskseqd.cjs, and the loader that
// bin/diskseqd.cjs runs (dist/src/start.js) into dist/bundle/start.cjs. Measured
// (bench/cold-start.ts): a daemon of ~40 ES modules spends as long again as `node -e 0`
// before it serves, most of it in Node's ES module loader (resolving each import, reading
// package scopes) and in loading the modules one by one; one CommonJS file needs neither.
// Native addons stay outside: the .node files are loaded where npm built them, and
// unix-dgram (loaded only under systemd) from node_modules.
//
// dist/bundle/ sits two levels below the package root, as dist/src/ and dist/native/ do,
// so the paths the modules compute from import.meta.dirname (the addon, package.json) hold.
import { build, transformSync } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const require = createRequire(import.meta.url);

// long ships an ES module for import and a UMD file for require: the daemon imports it and
// protobufjs requires it, which made two copies of the library, and of the Long class, in
// the bundle. Both now get the one require() gets.
const oneLong = {
  name: 'one-long',
  setup(b) {
    const longPath = require.resolve('long');
    b.onResolve({ filter: /^long$/ }, () => ({ path: longPath }));
  },
};

// The modules call createRequire() only to load what sits beside the bundle (the addon,
// unix-dgram), and both bundles are in dist/bundle/: there, the bundle's own require()
// resolves exactly as createRequire() of a file of that directory would, and shares the
// one module cache. So the bundles get that require() instead of node:module, which a
// start would otherwise load (~1.1 ms, measured with marks in the loader). A path from
// elsewhere (or a URL) throws rather than resolve from the wrong place.
//
// The addon is loaded with process.dlopen, as require() would in the end, without the
// module resolution before it: from the loader's first line to the addon's exports took
// ~1.5 ms through require() and ~0.9 ms this way (marks in a copy of start.cjs). Both
// bundles (start.cjs loads the addon for the code cache's checksum, then the daemon's bundle
// needs it) share one registry on the process, so the addon is opened and initialised once.
const ownRequire = {
  name: 'own-require',
  setup(b) {
    b.onResolve({ filter: /^node:module$/ }, () => ({ path: 'node:module', namespace: 'own-require' }));
    b.onLoad({ filter: /.*/, namespace: 'own-require' }, () => ({
      loader: 'js',
      contents: `const { dirname, join } = require('node:path');
const addons = (process[Symbol.for('diskseqd.bundle-addons')] ??= new Map());
function requireHere(request) {
  if (!request.endsWith('.node')) return require(request);
  const path = join(__dirname, request);
  let exports = addons.get(path);
  if (exports === undefined) {
    const module = { exports: {} };
    process.dlopen(module, path);
    exports = module.exports;
    addons.set(path, exports);
  }
  return exports;
}
export function createRequire(from) {
  if (typeof from !== 'string' || dirname(from) !== __dirname) {
    throw new Error('createRequire(' + String(from) + '): a bundle requires only as a file of its own directory, ' + __dirname);
  }
  return requireHere;
}`,
    }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['*.node', 'unix-dgram'],
  // CommonJS has no import.meta: the modules use import.meta.dirname and .filename, which
  // are CommonJS's own __dirname and __filename. import.meta.url is an error here: the
  // bundle would have to make a URL of its path at every start, and nothing needs one.
  define: { 'import.meta.dirname': '__dirname', 'import.meta.filename': '__filename' },
  logOverride: { 'empty-import-meta': 'error' },
  banner: { js: "'use strict';" },
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [oneLong, ownRequire],
};

// Comments esbuild keeps may hold characters beyond ASCII (a dash, a µ); code does not, as
// esbuild escapes them in strings, templates and regular expressions (its default charset).
// One such character makes Node decode the file into a two-byte string, twice the size of
// the one-byte string an ASCII file becomes, and V8 compiles and checks the code cache
// against that: measured, a start with the cache took ~5 ms longer (bench/cold-start.ts).
// So they are spelt in ASCII, and the build fails if that changed anything but comments:
// the file stripped of comments and whitespace must be the same before and after.
const SPELLINGS = { '\u2014': '--', '\u2013': '-', '\u00b5': 'u', '\u2192': '->', '\u2190': '<-', '\u00d7': 'x', '\u2264': '<=', '\u2265': '>=', '\u2026': '...', '\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"' };

function asciiComments(file) {
  const text = readFileSync(file, 'utf8');
  const ascii = text.replace(/[^\x00-\x7f]/gu, (c) => SPELLINGS[c] ?? '?');
  if (ascii === text) return;
  const code = (source) => transformSync(source, { loader: 'js', minifyWhitespace: true }).code;
  if (code(ascii) !== code(text)) throw new Error(`${file}: a character beyond ASCII outside a comment; esbuild should have escaped it`);
  writeFileSync(file, ascii);
}

// The daemon, loaded by start.cjs with the code cache (src/code-cache.ts); main() exported.
const daemonBundle = join(root, 'dist', 'bundle', 'diskseqd.cjs');
await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'main.js')], outfile: daemonBundle });
asciiComments(daemonBundle);
// What the bin runs: reads --cache-dir, then loads the daemon's bundle. Small: it is
// compiled on every start, before the cache can help.
const loaderBundle = join(root, 'dist', 'bundle', 'start.cjs');
await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'start.js')], outfile: loaderBundle });
asciiComments(loaderBundle);
