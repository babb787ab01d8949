/**
 * What a TypeScript project that depends on diskseqd gets. The tarball of `npm pack` is
 * installed (npm install --ignore-scripts: only the types matter here; npm fetches the
 * tarball's dependencies, and the types they carry, from the registry as for any install)
 * into a scratch project, and this project's own tsc compiles a consumer with
 * strict: true and skipLibCheck: false that uses connect, open, list, watch and
 * DiskseqError: no error, and nothing it uses is silently `any`. And the tarball carries
 * none of the test harness.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../testkit/cleanup.js';
import { REPO_ROOT } from '../testkit/repo.js';
import { packTarball } from './helpers/package.js';

const execFileAsync = promisify(execFile);
const TSC = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/** A consumer as the README shows one; IsAny<T> = false fails to compile wherever T is any. */
const CONSUMER = `import { connect, ConnectionError, DiskseqError, type Client, type DeviceInfo, type DiskseqErrorCode, type WatchEvent } from 'diskseqd';

type IsAny<T> = 0 extends 1 & T ? true : false;

export async function consume(socketPath: string): Promise<number> {
  const client: Client = await connect({ socketPath });
  const clientTyped: IsAny<typeof client> = false;
  try {
    const opened = await client.open({ diskseq: 42n, partition: 1, access: 'read-only', waitMs: 2000, expect: { ro: '0' }, signal: AbortSignal.timeout(5000) });
    const fd: number = opened.fd;
    const device: DeviceInfo = opened.device;
    const size: bigint = device.sizeBytes;
    const openTyped: [IsAny<typeof opened>, IsAny<typeof opened.fd>, IsAny<typeof opened.device>] = [false, false, false];
    const names: string[] = (await client.list({ includePartitions: true })).map((d) => d.name);
    const listTyped: IsAny<Awaited<ReturnType<Client['list']>>> = false;
    for await (const event of client.watch()) {
      const seen: WatchEvent = event;
      const eventTyped: IsAny<typeof event> = false;
      if (seen.kind === 'synced') break;
      console.log(seen.kind, seen.device?.diskseq);
    }
    void [clientTyped, size, openTyped, names, listTyped];
    return fd;
  } catch (error) {
    if (error instanceof DiskseqError) {
      const code: DiskseqErrorCode = error.code;
      const codeTyped: IsAny<typeof error.code> = false;
      if (code === 'NOT_FOUND') return -1;
      void codeTyped;
    }
    if (error instanceof ConnectionError) return -2;
    throw error;
  } finally {
    client.close();
  }
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022'], types: ['node'],
    strict: true, skipLibCheck: false, noEmit: true,
  },
  files: ['consumer.ts'],
};

test('a strict TypeScript consumer of the packed package compiles, skipLibCheck off, nothing typed any', async (t) => {
  const dir = tempDir(t, 'diskseqd-types-');
  const { tarball } = await packTarball(dir);
  const project = join(dir, 'consumer');
  await execFileAsync('mkdir', [project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'diskseqd-consumer', version: '1.0.0', private: true, type: 'module' }));
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
  writeFileSync(join(project, 'consumer.ts'), CONSUMER);
  await execFileAsync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock', tarball],
    { cwd: project, timeout: 300_000, maxBuffer: 16 << 20 });
  const compiled = await execFileAsync(process.execPath, [TSC, '-p', project], { cwd: project, maxBuffer: 16 << 20 })
    .then(() => ({ code: 0, output: '' }), (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? -1, output: `${error.stdout ?? ''}${error.stderr ?? ''}` }));
  t.is(compiled.code, 0, `tsc on the consumer:\n${compiled.output}`);
  t.is(compiled.output, '');
});

test('the tarball carries none of the test harness', async (t) => {
  const { files } = await packTarball(tempDir(t, 'diskseqd-pack-'));
  const harness = files.map((f) => f.path).filter((path) => /^(dist\/)?(test|testkit|bench)\//.test(path));
  t.deepEqual(harness, []);
  t.true(files.some((f) => f.path === 'dist/client/index.d.ts'), 'the library is there (a control for the filter)');
});
