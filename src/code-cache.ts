/**
 * The daemon's code compiled once per upgrade, not once per start (docs/design.md, "Startup
 * and memory"). V8 compiles a function when it first runs; a daemon that starts on every
 * socket activation compiled its bundle's start-up and request paths each time, about a
 * third of what it spent before it answered. This loads the bundle with V8's code cache
 * (vm.Script's cachedData): the bytecode of every function an earlier start ran, kept in
 * the cache directory (--cache-dir) across reboots, so that only the first start after an
 * upgrade of the daemon or of Node compiles it all.
 *
 * The cache is used only when it is certainly for this code:
 * - the file is the daemon's own, in a directory only it can write to (src/own-file.ts);
 * - it names the very bundle file (device, inode, size, mtime and ctime: any rewrite or
 *   reinstall changes ctime) and the Node, V8, architecture and flags that made it, since
 *   V8's own check compares only the source's length with what the cache was made from;
 * - its checksum matches: a release build of V8 does not verify the one it writes.
 * Anything else is ignored and replaced; V8 may still reject a cache (cachedDataRejected),
 * and then compiles as without one. The file is written once per bundle and Node, by the
 * start that had no usable cache, when the daemon has served its first request (save()).
 */
import { isAscii } from 'node:buffer';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { native } from '../native/index.js';
import { checkOwnDirectory, makeOwnDirectory, readOwnFile, writeOwnFile } from './own-file.js';

/** The cache's file name in the cache directory. */
export const CODE_CACHE_FILE = 'code-cache';
/** The first line of the file: its format. */
const MAGIC = 'diskseqd code cache 2\n';
/** What every format's first line starts with: a file of another format is stale, not damaged. */
const MAGIC_PREFIX = 'diskseqd code cache ';
/** How errors name the directory. */
const CACHE_DIRECTORY = 'cache directory';
/** A larger file is refused unread (the daemon's cache is well under 1 MiB). */
const MAX_BYTES = 32 * 1024 * 1024;

/** What became of the cache at this start. */
export type CodeCacheUse =
  | 'used' // V8 took it
  | 'absent' // no file this process may read (the first start after an upgrade; a user's --help)
  | 'stale' // made for another bundle, Node or flag set
  | 'damaged' // its checksum or layout is wrong
  | 'untrusted' // not the daemon's own file, or its directory is writable by others
  | 'rejected'; // V8 refused it (cachedDataRejected)

/** The code cache of one start: what became of it, and the way to write one. */
export class CodeCache {
  private saved = false;

  /**
   * @param use what became of the cache at this start
   * @param why for 'damaged' and 'untrusted': the reason, for the log
   */
  constructor(
    private readonly script: Script,
    private readonly key: string,
    readonly use: CodeCacheUse,
    readonly why?: string,
  ) {}

  /** Whether save() will write a file: once, unless this start used one. */
  get wanted(): boolean {
    return this.use !== 'used' && !this.saved;
  }

  /**
   * Writes the cache into `dir` (the cache directory, created 0700 if missing, refused
   * unless the daemon's own) with the bytecode of every function compiled so far; does
   * nothing after the first call or when this start used a cache. Synchronous, on the JS
   * thread: call it when nothing waits. Throws on a write error (the daemon logs it; the
   * next start compiles as without one).
   */
  save(dir: string): void {
    if (!this.wanted) return;
    this.saved = true;
    makeOwnDirectory(dir, CACHE_DIRECTORY);
    const data = this.script.createCachedData();
    writeOwnFile(join(dir, CODE_CACHE_FILE), [MAGIC, this.key, '\n', native.checksum(data).toString(16), '\n', data]);
  }
}

/** What loadBundle returns: the bundle's exports and its code cache. */
export interface LoadedBundle {
  exports: Record<string, unknown>;
  cache: CodeCache;
}

/**
 * Runs the CommonJS bundle at `bundlePath`, as require() would, compiled with the code
 * cache in `cacheDir` when there is one made for it.
 */
export function loadBundle(bundlePath: string, cacheDir: string): LoadedBundle {
  const { source, identity } = readBundle(bundlePath);
  const key = JSON.stringify({
    bundle: identity, node: process.version, v8: process.versions.v8, arch: process.arch, flags: process.execArgv,
  });
  const found = readCache(join(cacheDir, CODE_CACHE_FILE), cacheDir, key);
  // The wrapper require() puts around a CommonJS file, on its first line: line numbers in
  // stack traces stay those of the file.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: bundlePath, cachedData: found.data,
  });
  const use = found.data !== undefined && script.cachedDataRejected === true ? 'rejected' : found.use;
  const module = { exports: {} as Record<string, unknown> };
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper.call(module.exports, module.exports, createRequire(bundlePath), module, bundlePath, dirname(bundlePath));
  return { exports: module.exports, cache: new CodeCache(script, key, use, found.why) };
}

/** The bundle's text and what tells this file from any other: read from one open, so both are of the same file. */
function readBundle(path: string): { source: string; identity: string[] } {
  const fd = openSync(path, 'r');
  try {
    const stat = fstatSync(fd, { bigint: true });
    const identity = [stat.dev, stat.ino, stat.size, stat.mtimeNs, stat.ctimeNs].map(String);
    const bytes = readFileSync(fd);
    // The build makes the bundle ASCII (scripts/bundle.js): then latin1 is the same text,
    // decoded without UTF-8's checks (~0.7 ms less for its 500 KB).
    return { source: bytes.toString(isAscii(bytes) ? 'latin1' : 'utf8'), identity };
  } finally {
    closeSync(fd);
  }
}

/** The V8 data of the cache file if it is the daemon's own, undamaged and made with `key`. */
function readCache(path: string, dir: string, key: string): { data?: Buffer; use: CodeCacheUse; why?: string } {
  let file: Buffer;
  try {
    checkOwnDirectory(dir, CACHE_DIRECTORY);
    file = readOwnFile(path, MAX_BYTES);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Not there yet; or not ours to read (a user's --help or --check-policy, say).
    if (code === 'ENOENT' || code === 'EACCES') return { use: 'absent' };
    return { use: 'untrusted', why: (error as Error).message };
  }
  const keyEnd = file.indexOf('\n', MAGIC.length);
  const sumEnd = keyEnd < 0 ? -1 : file.indexOf('\n', keyEnd + 1);
  if (file.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    // A file in an older daemon's format (1: an FNV-1a checksum) is replaced like any stale cache.
    if (file.toString('latin1', 0, MAGIC_PREFIX.length) === MAGIC_PREFIX) return { use: 'stale' };
    return { use: 'damaged', why: 'not a code cache of this format' };
  }
  if (sumEnd < 0) return { use: 'damaged', why: 'not a code cache of this format' };
  if (file.toString('utf8', MAGIC.length, keyEnd) !== key) return { use: 'stale' };
  const data = file.subarray(sumEnd + 1);
  if (file.toString('latin1', keyEnd + 1, sumEnd) !== native.checksum(data).toString(16)) return { use: 'damaged', why: 'checksum mismatch' };
  return { data, use: 'used' };
}
