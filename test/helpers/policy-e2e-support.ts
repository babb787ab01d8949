/**
 * Shared pieces of the policy end-to-end tests (policy-matrix, reopen, policy-reload):
 * policy files the loader accepts (root-owned, 0644), waiting for the daemon's audit and
 * reload lines instead of sleeping, and running the real diskseqd / diskseq-open binaries.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import type { AuditLine, DaemonProcess, LogLine } from '../../testkit/daemon.js';
import { cliArgv, daemonArgv } from '../../testkit/repo.js';
import type { PeerIdentity, PeerReport } from './peer.js';

/** A directory for policy files, removed when the test ends. */
export function policyDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'diskseqd-pe2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Writes `content` (an object: JSON-encoded; a string: as is) to `path`, mode 0644, owned
 * by root (we are root). The file is replaced by rename, as an administrator's editor or
 * config management would, so a SIGHUP never reads it half-written.
 */
export function writePolicy(path: string, content: unknown): string {
  const text = typeof content === 'string' ? content : `${JSON.stringify(content, null, 2)}\n`;
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, path);
  return path;
}

/** The open audit lines so far (hello/list lines of the client library left out). */
export function openAudits(daemon: DaemonProcess): AuditLine[] {
  return daemon.audits().filter((a) => a.op === 'open');
}

/**
 * Resolves with the open audit lines after the first `from`, once there are `count` of
 * them. The daemon writes the audit line after sending the answer, so a peer can be done
 * before its lines arrive: wait for them, never assume.
 */
export async function waitOpenAudits(daemon: DaemonProcess, from: number, count: number): Promise<AuditLine[]> {
  await daemon.waitForLog(() => openAudits(daemon).length >= from + count, 5000, `${count} open audit lines after the first ${from}`);
  return openAudits(daemon).slice(from, from + count);
}

/** What a test expects of one decision: the peer's outcome and the audit line's fields. */
export interface ExpectedDecision {
  /** 'OK' for a delivered fd, else the error code the peer got. */
  code: string;
  rule: string;
  /** Kernel name of the device the audit line names. */
  device: string;
  /** Text the refusal message must contain (checked on the peer's side). */
  message?: RegExp;
}

/**
 * Checks each step of `report` against `expected`, and the matching audit lines (in the
 * same order): the deciding rule, allow/deny, the code, the peer's uid and the device.
 */
export function checkDecisions(t: ExecutionContext, who: string, report: PeerReport, audits: AuditLine[], expected: ExpectedDecision[]): void {
  t.is(report.results.length, expected.length, `${who}: one result per step`);
  t.is(audits.length, expected.length, `${who}: one audit line per step`);
  for (const [i, want] of expected.entries()) {
    const got = report.results[i];
    const audit = audits[i];
    const what = `${who}, step ${i} (${want.device})`;
    t.is(got?.ok ? 'OK' : got?.code, want.code, `${what}: outcome${got && !got.ok ? ` (${got.message})` : ''}`);
    if (got?.ok) t.is(got.name, want.device, `${what}: delivered the right device`);
    if (want.message) t.regex(got && !got.ok ? got.message : '', want.message, `${what}: refusal message`);
    t.is(audit?.rule, want.rule, `${what}: audit rule`);
    t.is(audit?.decision, want.code === 'OK' ? 'allow' : 'deny', `${what}: audit decision`);
    t.is(audit?.code, want.code, `${what}: audit code`);
    t.is(audit?.peer?.uid, report.uid, `${what}: audit peer uid`);
    t.is(audit?.device?.name, want.device, `${what}: audit device`);
  }
}

/** Sends SIGHUP and resolves with the first reload line (success or failure) it causes. */
export async function reload(daemon: DaemonProcess): Promise<LogLine> {
  const isReloadLine = (l: LogLine): boolean => l.msg === 'policy reloaded' || (typeof l.msg === 'string' && l.msg.startsWith('policy reload failed'));
  const start = daemon.logs.length;
  process.kill(daemon.pid, 'SIGHUP');
  return daemon.waitForLog((l) => isReloadLine(l) && daemon.logs.indexOf(l) >= start, 5000, 'a policy reload line');
}

/** Exit status and output of a finished process. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `argv` (optionally as another user, through setpriv) and collects its output. */
export function runProcess(argv: string[], options: { as?: PeerIdentity; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  const who = options.as;
  const [cmd, ...args] = who === undefined ? argv : [
    'setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`,
    who.groups && who.groups.length > 0 ? `--groups=${who.groups.join(',')}` : '--clear-groups', '--', ...argv,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** argv running bin/diskseqd.cjs with `args` (and its shebang's node flags). */
export const diskseqdArgv = daemonArgv;

/** argv running bin/diskseq-open.js with `args`. */
export const diskseqOpenArgv = cliArgv;
