/**
 * What /proc says about a process: its open fds and resident memory. Tests count a
 * daemon's fds and RSS before and after hostile workloads.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Number of fds the process has open (entries of /proc/<pid>/fd). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The process's fds and what they point to, for a leak message. */
export function fdTargets(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).map((n) => {
    try {
      return `${n} -> ${readlinkSync(join(dir, n))}`;
    } catch {
      return `${n} -> (gone)`;
    }
  });
}

/** Resident set size in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS line in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** The open-file flags of `fd` in process `pid` (/proc/<pid>/fdinfo), e.g. to check O_CLOEXEC. */
export function fdFlags(fd: number, pid: number | 'self' = 'self'): number {
  const match = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
  if (match === null) throw new Error(`no flags in /proc/${pid}/fdinfo/${fd}`);
  return parseInt(match[1]!, 8);
}

/** How many of the process's threads carry this name (/proc/<pid>/task/<tid>/comm). */
export function threadCount(pid: number, name?: string): number {
  let count = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    if (name === undefined) {
      count++;
      continue;
    }
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === name) count++;
    } catch {
      // The thread left meanwhile.
    }
  }
  return count;
}
