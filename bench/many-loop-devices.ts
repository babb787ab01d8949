/**
 * Thousands of real (unbound) loop devices for a benchmark, through bench/many-loop-devices.py
 * (LOOP_CTL_ADD, then LOOP_CTL_REMOVE of exactly those it created, in parallel). The helper
 * removes them when its standard input ends: when remove() closes it, and as well when this
 * process dies in any way, SIGKILL included, since the kernel closes the pipe then.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const HELPER = fileURLToPath(new URL('../../bench/many-loop-devices.py', import.meta.url));

/** Devices created; remove() takes them away again (idempotent). */
export interface ManyLoopDevices {
  created: number;
  remove(): Promise<void>;
}

/** Creates `count` loop devices; resolves once they exist. */
export function createManyLoopDevices(count: number): Promise<ManyLoopDevices> {
  const helper = spawn('/usr/bin/python3', [HELPER, String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const ended = new Promise<void>((resolve) => helper.once('close', () => resolve()));
  let removal: Promise<void> | undefined;
  const remove = (): Promise<void> => {
    removal ??= (async () => {
      helper.stdin!.end();
      await ended;
      if (!/^removed \d+$/m.test(out)) throw new Error(`loop device helper did not report its removal: ${out}`);
    })();
    return removal;
  };
  return new Promise((resolve, reject) => {
    helper.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /^created (\d+)$/m.exec(out);
      if (match) resolve({ created: Number(match[1]), remove });
    });
    helper.once('close', (code) => reject(new Error(`loop device helper exited (${code}) before creating the devices: ${out}`)));
    helper.once('error', reject);
  });
}
