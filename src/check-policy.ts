/**
 * `diskseqd --check-policy FILE [dry-run options]`: validate a policy file the way the
 * daemon loads it, warn about rules that can never take effect, and, with the dry-run
 * options, say what the policy decides for one peer, device and access (src/policy-dry-run.ts).
 * Needs no privilege beyond reading FILE and sysfs. Also the daemon's own warning lines.
 */
import type { DryRunQuestion } from './config.js';
import type { Logger } from './log.js';
import { formatPolicyError, Policy } from './policy/index.js';
import { dryRun, DryRunProblem, DRY_RUN_EXIT } from './policy-dry-run.js';

/** "1 rule", "3 rules". */
export function ruleCount(n: number): string {
  return `${n} rule${n === 1 ? '' : 's'}`;
}

/** Runs the check; returns the exit status (0 valid / allowed, see DRY_RUN_EXIT). */
export function checkPolicy(file: string, question: DryRunQuestion | undefined, sysfsRoot: string): number {
  let policy: Policy;
  try {
    policy = Policy.fromFile(file);
  } catch (error) {
    process.stderr.write(`${formatPolicyError(error)}\n`);
    return DRY_RUN_EXIT.invalidPolicy;
  }
  for (const warning of policy.warnings) process.stderr.write(`warning: ${warning.message}\n`);
  const warned = policy.warnings.length === 0 ? '' : `, ${policy.warnings.length} warning${policy.warnings.length === 1 ? '' : 's'}`;
  process.stdout.write(`${file}: valid (${ruleCount(policy.rules.length)}${warned})\n`);
  if (question === undefined) return 0;
  try {
    const result = dryRun(policy, question, sysfsRoot);
    process.stdout.write(result.text);
    return result.status;
  } catch (error) {
    if (!(error instanceof DryRunProblem)) throw error;
    process.stderr.write(`diskseqd: ${error.message}\n`);
    return error.status;
  }
}

/** Logs each warning of a freshly loaded policy (at start and at every reload). */
export function logPolicyWarnings(log: Logger, policy: Policy): void {
  for (const warning of policy.warnings) {
    log.warn({ policy: policy.source, rule: warning.rule, field: warning.field, problem: warning.problem }, 'policy rule can never take effect');
  }
}
