/**
 * What operators install: `npm pack` carries the units, the addon's sources and every bin
 * entry; a global install of that tarball (into a temporary prefix, from the npm
 * registry for the dependencies, building both native addons) gives working commands.
 * Uses the already built dist/ (pretest builds it), so pack runs with --ignore-scripts.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../testkit/repo.js';
import { tempDir } from '../testkit/cleanup.js';
import { packTarball } from './helpers/package.js';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string; version: string; bin: Record<string, string>; man: string[];
};
const gyp = JSON.parse(readFileSync(join(REPO_ROOT, 'binding.gyp'), 'utf8')) as { targets: Array<{ sources: string[] }> };

test('npm pack carries the units, the addon sources and every bin target', async (t) => {
  const result = await packTarball(tempDir(t));
  const files = new Set(result.files.map((f) => f.path));
  for (const unit of ['systemd/diskseqd.socket', 'systemd/diskseqd-varlink.socket', 'systemd/diskseqd.service']) t.true(files.has(unit), unit);
  for (const [name, target] of Object.entries(pkg.bin)) t.true(files.has(target.replace(/^\.\//, '')), `bin ${name} -> ${target}`);
  for (const manPage of pkg.man) t.true(files.has(manPage.replace(/^\.\//, '')), `man page ${manPage}`);
  t.true(files.has('client/completion/diskseq-open.bash'), 'the bash completion');
  for (const source of gyp.targets.flatMap((target) => target.sources)) t.true(files.has(source), source);
  t.true(files.has('binding.gyp'));
  t.true(files.has('dist/src/main.js'));
  // What bin/diskseqd.cjs runs, and the daemon's bundle it loads.
  for (const bundle of ['dist/bundle/start.cjs', 'dist/bundle/diskseqd.cjs']) t.true(files.has(bundle), bundle);
});

test('after npm install -g of the tarball every bin entry runs --help', async (t) => {
  const dir = tempDir(t);
  const result = await packTarball(dir);
  const prefix = join(dir, 'prefix');
  // --allow-scripts: npm 11 gates dependency install scripts; both addons must compile.
  await run('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund',
    `--allow-scripts=${pkg.name},unix-dgram,protobufjs`, result.tarball],
  { cwd: dir, timeout: 300_000, maxBuffer: 16 << 20 });
  for (const name of Object.keys(pkg.bin)) {
    const { stdout } = await run(join(prefix, 'bin', name), ['--help'], { cwd: dir, timeout: 30_000 });
    t.regex(stdout, /^Usage:/m, `${name} --help`);
  }
  // npm links the package's man pages into the prefix, where man finds them.
  for (const manPage of pkg.man) {
    const base = manPage.split('/').pop()!;
    t.true(existsSync(join(prefix, 'share', 'man', `man${base.split('.').pop()}`, base)), `share/man: ${base}`);
  }
});
