/**
 * The C programs of the benchmarks, built with the system's cc at bench time (never
 * committed, never part of the package): the floor broker (c-broker.c) and the client that
 * drives both it and diskseqd (c-client.c), against protobuf-c code generated from the
 * wire contract, as the LD_PRELOAD shim is (native/preload/Makefile).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../testkit/repo.js';

/** Paths of the built programs. */
export interface CPrograms {
  broker: string;
  client: string;
}

function run(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr || String(error)}`);
  }
}

/** Generates the protobuf-c code and compiles both programs into build/bench/. */
export function buildCPrograms(): CPrograms {
  const out = join(REPO_ROOT, 'build', 'bench');
  const gen = join(out, 'gen');
  mkdirSync(gen, { recursive: true });
  run('protoc-c', [`--proto_path=${join(REPO_ROOT, 'proto')}`, `--c_out=${gen}`, join(REPO_ROOT, 'proto', 'diskseqd.proto')]);
  const programs = { broker: join(out, 'c-broker'), client: join(out, 'c-client') };
  for (const [name, path] of [['c-broker', programs.broker], ['c-client', programs.client]] as const) {
    run('cc', ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Wno-unused-parameter', '-pthread', `-I${gen}`, '-o', path,
      join(REPO_ROOT, 'bench', `${name}.c`), join(gen, 'diskseqd.pb-c.c'), '-lprotobuf-c']);
  }
  return programs;
}
