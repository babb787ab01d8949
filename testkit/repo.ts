/**
 * Where things are in this checkout, for tests and benchmarks: the repository root, the two
 * programs and the LD_PRELOAD shim, and how to start the daemon exactly as its users do
 * (node with the flags of bin/diskseqd.cjs's shebang line).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onExit } from './cleanup.js';

/** The repository root (this file runs from dist/testkit/). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The daemon's program. */
export const DAEMON_SCRIPT = join(REPO_ROOT, 'bin', 'diskseqd.cjs');

/** The CLI's program (a thin wrapper around dist/client/cli.js's main). */
export const CLI_SCRIPT = join(REPO_ROOT, 'bin', 'diskseq-open.js');

/** The compiled CLI module: `main(argv)` is what bin/diskseq-open.js runs. */
export const CLI_MODULE = join(REPO_ROOT, 'dist', 'client', 'cli.js');

/** Where `make -C native/preload` puts the shim. */
export const SHIM_PATH = join(REPO_ROOT, 'build', 'Release', 'libdiskseq-preload.so');

/** The words of bin/diskseqd.cjs's `#!/usr/bin/env -S ...` line, which the three below pick from. */
const SHEBANG_WORDS: readonly string[] = readFileSync(DAEMON_SCRIPT, 'utf8').split('\n')[0]!.split(/\s+/);

/**
 * The node flags of that line: tests and benchmarks run the daemon the way users run it
 * (the flags change its memory use).
 */
export const SHEBANG_NODE_FLAGS: readonly string[] = SHEBANG_WORDS.filter((word) => word.startsWith('--'));

/** The NAME=VALUE words of that line: environment `env -S` gives the daemon (MALLOC_ARENA_MAX). */
export const SHEBANG_ENV: Readonly<Record<string, string>> = Object.fromEntries(SHEBANG_WORDS
  .filter((word) => /^[A-Z_][A-Z0-9_]*=/.test(word)).map((word) => [word.slice(0, word.indexOf('=')), word.slice(word.indexOf('=') + 1)]));

/** The variables that line removes (`env -S -u NAME`): NODE_EXTRA_CA_CERTS. */
export const SHEBANG_UNSET: readonly string[] = SHEBANG_WORDS.filter((_, i) => i > 0 && SHEBANG_WORDS[i - 1] === '-u');

/**
 * A --runtime-dir of its own for one test daemon: `run` in a fresh 0700 directory, removed
 * at process exit. A test daemon must never share the system's /run/diskseqd (other runs
 * share this machine, and the daemon keeps loop partitions' provenance there).
 */
export function privateRuntimeDir(): string {
  const parent = mkdtempSync(join(tmpdir(), 'diskseqd-runtime-'));
  onExit(() => rmSync(parent, { recursive: true, force: true }));
  return join(parent, 'run');
}

/** A --cache-dir of its own (not yet created, as the daemon creates it), removed at exit. */
export function privateCacheDir(): string {
  const parent = mkdtempSync(join(tmpdir(), 'diskseqd-cache-'));
  onExit(() => rmSync(parent, { recursive: true, force: true }));
  return join(parent, 'cache');
}

/**
 * argv that runs the daemon with `args`: this node, the shebang's flags, bin/diskseqd.cjs,
 * a private --runtime-dir and --cache-dir unless `args` name them, and --no-varlink unless
 * `args` choose a Varlink path (--varlink-socket) themselves: the daemon's default Varlink
 * path, runtime and cache directories are shared by every daemon on this machine, so no
 * daemon a test or benchmark starts may ever use them.
 */
export function daemonArgv(...args: string[]): string[] {
  const runtime = args.includes('--runtime-dir') ? [] : ['--runtime-dir', privateRuntimeDir()];
  const cache = args.includes('--cache-dir') ? [] : ['--cache-dir', privateCacheDir()];
  const varlink = args.includes('--varlink-socket') || args.includes('--no-varlink') ? [] : ['--no-varlink'];
  return [process.execPath, ...SHEBANG_NODE_FLAGS, DAEMON_SCRIPT, ...runtime, ...cache, ...args, ...varlink];
}

/** argv that runs diskseq-open with `args`. */
export function cliArgv(...args: string[]): string[] {
  return [process.execPath, CLI_SCRIPT, ...args];
}
