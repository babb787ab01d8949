/**
 * The package as users get it: `npm pack` of this checkout (with --ignore-scripts: pretest
 * has built dist/ already), for the tests of what the tarball carries and what installing
 * it gives.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../testkit/repo.js';

const execFileAsync = promisify(execFile);

/** What `npm pack --json` reports of one tarball. */
export interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

/** Packs this checkout into `destination`; resolves with what npm reports and the tarball's path. */
export async function packTarball(destination: string): Promise<PackResult & { tarball: string }> {
  const { stdout } = await execFileAsync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', destination],
    { cwd: REPO_ROOT, maxBuffer: 16 << 20 });
  const result = (JSON.parse(stdout) as PackResult[])[0]!;
  return { ...result, tarball: join(destination, result.filename) };
}
