/**
 * The one error a policy load throws. Its message is complete and meant for humans:
 * `FILE: rule "NAME": field "PATH": what is wrong` (rule and field when they apply).
 */
export class PolicyError extends Error {
  override name = 'PolicyError';
  /** The policy file (or source label) the problem is in. */
  readonly file: string;
  /** The rule's name, or `#index` (counted from 0, like `rules[index]`) when the name is the problem. */
  readonly rule?: string;
  /** The field path inside the rule (or the top-level object), e.g. `access[1]`, `peer.uids[0]`. */
  readonly field?: string;
  /** What is wrong, without the file/rule/field prefix. */
  readonly problem: string;

  constructor(file: string, problem: string, where: { rule?: string; field?: string } = {}) {
    super(formatLocation(file, where.rule, where.field) + problem);
    this.file = file;
    this.rule = where.rule;
    this.field = where.field;
    this.problem = problem;
  }
}

/** `FILE: rule "NAME": field "PATH": ` — where a problem is, as every policy message begins. */
export function formatLocation(file: string, rule?: string, field?: string): string {
  let text = `${file}: `;
  if (rule !== undefined) text += rule.startsWith('#') ? `rule ${rule}: ` : `rule ${JSON.stringify(rule)}: `;
  if (field !== undefined) text += `field ${JSON.stringify(field)}: `;
  return text;
}

/**
 * One line for `diskseqd --check-policy` and the startup/reload log: a PolicyError's own
 * message, or the message of anything else that was thrown.
 */
export function formatPolicyError(error: unknown): string {
  if (error instanceof PolicyError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
