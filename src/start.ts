/**
 * What bin/diskseqd.cjs runs: loads the daemon's bundle (dist/bundle/diskseqd.cjs) with the
 * code cache of its cache directory (src/code-cache.ts), then runs its main(). A bundle of
 * its own (dist/bundle/start.cjs), small, so that little is compiled before the cache is.
 * It loads the addon first (the cache's checksum); the daemon's bundle, in the same
 * directory, then gets the same module from require's cache, not a second copy.
 */
import { join } from 'node:path';
import { loadBundle } from './code-cache.js';
import type { main as Main } from './main.js';
import { cacheDirOf } from './options.js';

const argv = process.argv.slice(2);
const { exports, cache } = loadBundle(join(import.meta.dirname, 'diskseqd.cjs'), cacheDirOf(argv));
(exports.main as typeof Main)(argv, cache);
