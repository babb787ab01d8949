// The Python client's own suite (client/python/tests, pytest), run once per protobuf
// runtime it supports: Debian 12's python3-protobuf (4.21) and the newest from the package
// index. The venvs live outside the checkout (scripts/setup-python-venvs.sh, which the
// README's set-up command and .ci/run call); the client is reinstalled into each from this
// checkout's current source before its run, so a stale install is never what is tested.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from './helpers/ci.js';
import { REPO_ROOT } from '../testkit/repo.js';

const VENVS = process.env.DISKSEQD_PY_VENVS ?? '/opt/diskseqd-test/venvs';
const SETUP = join(REPO_ROOT, 'scripts', 'setup-python-venvs.sh');

interface Run {
  code: number | null;
  output: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: join(REPO_ROOT, 'client', 'python'), env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

const tail = (text: string, lines = 80): string => text.trimEnd().split('\n').slice(-lines).join('\n');

for (const [venv, runtime] of [['debian', /^4\.21\./], ['pypi', /^(?:[5-9]|\d\d)\./]] as const) {
  test.serial(`python client suite, protobuf from ${venv}`, async (t) => {
    t.timeout(15 * 60_000);
    if (!needsRoot(t)) return;
    const python = join(VENVS, venv, 'bin', 'python');
    if (!existsSync(python)) {
      const reason = `${python} is missing: run scripts/setup-python-venvs.sh (the README's set-up command does)`;
      if (process.env.CI === 'true' || process.env.CI === '1') return t.fail(`CI is set and ${reason}`);
      console.warn(`\n*** SKIPPED (not a pass): ${t.title}: ${reason} ***\n`);
      t.log(`SKIPPED: ${reason}`);
      return t.pass();
    }
    const install = await run('bash', [SETUP, '--package-only', venv]);
    if (install.code !== 0) return t.fail(`reinstalling the client into ${venv} failed:\n${tail(install.output)}`);
    const version = await run(python, ['-c', 'import google.protobuf as p; print(p.__version__)']);
    t.regex(version.output.trim(), runtime, `protobuf runtime of the ${venv} venv`);

    const pytest = await run(python, ['-m', 'pytest', '-p', 'no:cacheprovider', '-q', '-rfEs', 'tests'], {
      ...process.env,
      PYTHONDONTWRITEBYTECODE: '1',
      DISKSEQD_REPO_ROOT: REPO_ROOT,
      DISKSEQD_NODE: process.execPath,
    });
    const summary = pytest.output.trim().split('\n').pop() ?? '';
    t.log(`protobuf ${version.output.trim()}: ${summary}`);
    if (pytest.code !== 0) return t.fail(`pytest exited ${pytest.code} (protobuf ${version.output.trim()}):\n${tail(pytest.output)}`);
    // No test may have been skipped silently: under CI every test runs.
    if (/skipped/.test(summary) && (process.env.CI === 'true' || process.env.CI === '1')) return t.fail(`tests skipped under CI: ${summary}`);
    t.regex(summary, /\d+ passed/);
  });
}
