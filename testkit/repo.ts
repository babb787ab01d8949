/**
 * Where things are in this checkout, for tests and benchmarks: the repository root, the two
 * programs and the LD_PRELOAD shim, and how to start the daemon exactly as its users do
 * (node with the flags of bin/diskseqd.cjs's shebang line).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/**
 * The node flags of bin/diskseqd.cjs's `#!/usr/bin/env -S node ...` line: tests and
 * benchmarks run the daemon the way users run it (the flags change its memory use).
 */
export const SHEBANG_NODE_FLAGS: readonly string[] = readFileSync(DAEMON_SCRIPT, 'utf8').split('\n')[0]!
  .split(/\s+/).filter((word) => word.startsWith('--'));

/** The NAME=VALUE words of that line: environment `env -S` gives the daemon (MALLOC_ARENA_MAX). */
export const SHEBANG_ENV: Readonly<Record<string, string>> = Object.fromEntries(readFileSync(DAEMON_SCRIPT, 'utf8').split('\n')[0]!
  .split(/\s+/).filter((word) => /^[A-Z_][A-Z0-9_]*=/.test(word)).map((word) => [word.slice(0, word.indexOf('=')), word.slice(word.indexOf('=') + 1)]));

/** argv that runs the daemon with `args`: this node, the shebang's flags, bin/diskseqd.cjs. */
export function daemonArgv(...args: string[]): string[] {
  return [process.execPath, ...SHEBANG_NODE_FLAGS, DAEMON_SCRIPT, ...args];
}

/** argv that runs diskseq-open with `args`. */
export function cliArgv(...args: string[]): string[] {
  return [process.execPath, CLI_SCRIPT, ...args];
}
