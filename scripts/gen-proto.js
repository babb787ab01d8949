// Generates typed protobuf code from proto/diskseqd.proto into proto/gen/ (built, not
// committed). protobufjs' ES module output namespace-imports "protobufjs/minimal", a CommonJS
// module: Node's ESM loader needs the file extension and exposes it as the default export.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(dirname(new URL(import.meta.url).pathname), '..');
const cliDir = dirname(require.resolve('protobufjs-cli/package.json'));
const outDir = join(root, 'proto', 'gen');
const js = join(outDir, 'diskseqd.js');
mkdirSync(outDir, { recursive: true });

execFileSync(process.execPath, [join(cliDir, 'bin', 'pbjs'), '-t', 'static-module', '-w', 'es6',
  '--force-long', '--no-verify', '--no-delimited', '--no-beautify', '-o', js,
  join(root, 'proto', 'diskseqd.proto')], { stdio: 'inherit' });
const code = readFileSync(js, 'utf8').replace('import * as $protobuf from "protobufjs/minimal";', 'import $protobuf from "protobufjs/minimal.js";');
writeFileSync(js, code);
execFileSync(process.execPath, [join(cliDir, 'bin', 'pbts'), '-o', join(outDir, 'diskseqd.d.ts'), js],
  { stdio: 'inherit' });
