// diskseq-open --preload -- COMMAND: COMMAND runs with the shim prepended to LD_PRELOAD —
// the package's own build/Release/libdiskseq-preload.so, or the copy DISKSEQD_PRELOAD_LIBRARY
// names — or, when the library is missing, one clear line and exit 125 (diskseq-open's own
// failure, in a form that runs COMMAND). (The shim at work under the wrapper, with real
// tools and the real daemon: preload-tools.test.ts.)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { tempDir } from '../testkit/cleanup.js';
import { readableShim } from '../testkit/preload.js';
import { SHIM_PATH } from '../testkit/repo.js';
import { cannotRun } from './helpers/ci.js';
import { runCli } from './helpers/cli.js';

const PRINT_LD_PRELOAD = ['sh', '-c', 'printf %s "$LD_PRELOAD"'];

test('--preload without the shim built fails clearly, or runs COMMAND with it preloaded', async (t) => {
  const result = await runCli(['--preload', '--', ...PRINT_LD_PRELOAD], { env: { LD_PRELOAD: '' } });
  if (existsSync(SHIM_PATH)) {
    t.is(result.code, 0, result.stderr);
    t.is(result.stdout, SHIM_PATH);
  } else {
    t.is(result.code, 125);
    t.regex(result.stderr, /^diskseq-open: the preload library \S+libdiskseq-preload\.so is missing/);
  }
});

test('DISKSEQD_PRELOAD_LIBRARY names the library --preload prepends, and a missing one is one clear line', async (t) => {
  if (!existsSync(SHIM_PATH)) {
    cannotRun(t, `${SHIM_PATH} is missing: build it with \`make -C native/preload\``);
    return;
  }
  const copy = readableShim();
  t.not(copy, SHIM_PATH);
  const result = await runCli(['--preload', '--', ...PRINT_LD_PRELOAD], { env: { LD_PRELOAD: '/lib/other.so', DISKSEQD_PRELOAD_LIBRARY: copy } });
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout, `${copy}:/lib/other.so`, 'the named copy first, then what was preloaded before');

  const missing = join(tempDir(t, 'diskseqd-cli-preload-'), 'absent.so');
  const refused = await runCli(['--preload', '--', 'touch', join(missing, '..', 'ran')], { env: { DISKSEQD_PRELOAD_LIBRARY: missing } });
  t.is(refused.code, 125);
  t.is(refused.stderr, `diskseq-open: the preload library ${missing} is missing (from DISKSEQD_PRELOAD_LIBRARY)\n`);
  t.false(existsSync(join(missing, '..', 'ran')), 'COMMAND was not run');
});
