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
// so the paths the modules compute from import.meta.url (the addon, package.json) hold.
import { build } from 'esbuild';
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

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['*.node', 'unix-dgram'],
  // CommonJS has no import.meta: give the modules this file's own URL instead.
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: "'use strict';\nconst __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [oneLong],
};

// The daemon, loaded by start.cjs with the code cache (src/code-cache.ts); main() exported.
await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'main.js')], outfile: join(root, 'dist', 'bundle', 'diskseqd.cjs') });
// What the bin runs: reads --runtime-dir, then loads the daemon's bundle. Small: it is
// compiled on every start, before the cache can help.
await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'start.js')], outfile: join(root, 'dist', 'bundle', 'start.cjs') });
