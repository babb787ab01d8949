// Bash completion for diskseq-open (client/completion/diskseq-open.bash), run in a real
// bash, with and without bash-completion's helpers loaded: every option of --help, every
// --list column and attribute key, COMMAND after `--`, and the DEVICEs the real daemon
// serves now — through DISKSEQD_SOCKET or the --socket on the line.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ATTRIBUTE_KEYS } from '../proto/attribute-keys.js';
import { COLUMNS } from '../client/list-format.js';
import { startBroker } from './helpers/broker.js';
import { cannotRun, needsRoot } from './helpers/ci.js';
import { cliOnPath, runCli } from './helpers/cli.js';
import { tempDir } from '../testkit/cleanup.js';
import { createLoop } from '../testkit/loop.js';
import { REPO_ROOT } from '../testkit/repo.js';

const SCRIPT = join(REPO_ROOT, 'client', 'completion', 'diskseq-open.bash');
const HELPERS = '/usr/share/bash-completion/bash_completion';

/** The candidates bash completion offers for the command line `words` (the last is the word being completed). */
function complete(words: string[], options: { helpers: boolean; env?: NodeJS.ProcessEnv; bin?: string }): string[] {
  const script = [
    options.helpers ? `. ${HELPERS}` : '',
    `. ${JSON.stringify(SCRIPT)}`,
    'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()',
    '_diskseq_open',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, PATH: `${options.bin ?? ''}:${process.env.PATH ?? '/usr/bin:/bin'}` };
  if (options.env?.DISKSEQD_SOCKET === undefined) delete env.DISKSEQD_SOCKET;
  return execFileSync('bash', ['-c', script, 'bash', ...words], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] }).split('\n').filter((line) => line !== '');
}

for (const helpers of [false, true]) {
  const mode = helpers ? 'with bash-completion' : 'without bash-completion';

  test(`completion (${mode}): options, columns, attribute keys and COMMAND`, async (t) => {
    if (helpers && !existsSync(HELPERS)) return cannotRun(t, `${HELPERS} is missing (apt-get install bash-completion)`);
    const help = (await runCli(['--help'])).stdout;
    const offered = complete(['diskseq-open', '-'], { helpers });
    // The options --help describes: the lines that start with one (not its examples).
    const options = [...help.matchAll(/^ {2,6}(?:-[a-zA-Z], )?(--[a-z][a-z-]+)/gm)].map((m) => m[1]!);
    t.true(options.length >= 18, options.join(' '));
    for (const option of [...options, '--list']) {
      t.true(offered.includes(option), `${option} is offered`);
    }
    for (const short of [...help.matchAll(/^ {2}(-[a-zA-Z]), --/gm)].map((m) => m[1]!)) t.true(offered.includes(short), short);
    t.deepEqual(complete(['diskseq-open', '--li'], { helpers }), ['--list']);
    t.deepEqual(complete(['diskseq-open', '--list', '-o', 'NAME,MA'], { helpers }).map((c) => c.replace(/^.*,/, '')).filter((c) => c.startsWith('MA')).length, 1);
    const columns = complete(['diskseq-open', '--list', '-o', '+'], { helpers }).map((c) => c.replace(/^\+/, ''));
    t.deepEqual(columns.sort(), Object.keys(COLUMNS).sort());
    const keys = complete(['diskseq-open', '--expect', ''], { helpers }).map((k) => k.replace(/=$/, ''));
    t.deepEqual(keys.sort(), [...ATTRIBUTE_KEYS].sort());
    t.true(complete(['diskseq-open', '42', '--', 'mkfs.ex'], { helpers }).includes('mkfs.ext4'));
  });

  test(`completion (${mode}): DEVICEs are the diskseqs served now, from DISKSEQD_SOCKET or --socket on the line`, async (t) => {
    if (!needsRoot(t)) return;
    if (helpers && !existsSync(HELPERS)) return cannotRun(t, `${HELPERS} is missing (apt-get install bash-completion)`);
    const loop = createLoop({ sizeMiB: 8, partitionsMiB: [2], partscan: true }, t);
    const { daemon } = await startBroker(t);
    const bin = cliOnPath(join(tempDir(t, 'diskseqd-completion-'), 'bin'));
    const prefix = `${loop.diskseq}`.slice(0, -1);
    const viaEnv = complete(['diskseq-open', '--rw', prefix], { helpers, bin, env: { DISKSEQD_SOCKET: daemon.socketPath } });
    t.true(viaEnv.includes(`${loop.diskseq}`), viaEnv.join(' '));
    t.true(viaEnv.includes(`${loop.diskseq}p1`), viaEnv.join(' '));
    const viaOption = complete(['diskseq-open', '--socket', daemon.socketPath, '42', '--rw', prefix], { helpers, bin });
    t.true(viaOption.includes(`${loop.diskseq}p1`), viaOption.join(' '));
    const listing = complete(['diskseq-open', '--socket', daemon.socketPath, '--list', loop.devPath.slice(0, -1)], { helpers, bin });
    t.true(listing.includes(loop.devPath), listing.join(' '));
    // No daemon: no DEVICEs, and no error text on the command line.
    t.deepEqual(complete(['diskseq-open', '--socket', '/nonexistent.sock', prefix], { helpers, bin }), []);
  });
}
