/**
 * Policy validation: each kind of mistake gives its own message naming the file, the
 * rule and the field, and a valid file loads completely.
 */
import test, { type ExecutionContext } from 'ava';
import { ATTRIBUTE_KEYS } from '../proto/attribute-keys.js';
import { formatPolicyError, Policy, PolicyError } from '../src/policy/index.js';
import { accountFiles } from './helpers/policy-fixtures.js';

const FILE = 'policy.json';

/** Load `document` (an object, serialised here, or raw text) and return the PolicyError. */
function loadError(t: ExecutionContext, document: unknown): PolicyError {
  const text = typeof document === 'string' ? document : JSON.stringify(document);
  const error = t.throws(() => Policy.fromJSON(text, FILE, accountFiles(t)), { instanceOf: PolicyError });
  return error!;
}

const rule = (fields: Record<string, unknown>) => ({ rules: [{ name: 'r', peer: { uids: [1000] }, ...fields }] });

interface Case {
  title: string;
  document: unknown;
  rule?: string;
  field?: string;
  problem: string | RegExp;
}

const cases: Case[] = [
  {
    title: 'unknown top-level field',
    document: { rules: [], version: 1 },
    field: 'version',
    problem: 'unknown field "version" (expected rules, comment, status_viewers)',
  },
  {
    title: 'unknown rule field (typo)',
    document: rule({ acess: ['read-only'] }),
    rule: 'r',
    field: 'acess',
    problem: 'unknown field "acess" (expected name, comment, effect, peer, device, access, exclusive, loop_devices)',
  },
  {
    title: 'unknown peer field',
    document: rule({ peer: { users: ['alice'] } }),
    rule: 'r',
    field: 'peer.users',
    problem: 'unknown field "users" (expected uids, gids, groups)',
  },
  {
    title: 'unknown device field',
    document: rule({ device: { driver: ['loop'] } }),
    rule: 'r',
    field: 'device.driver',
    problem: 'unknown field "driver" (expected drivers, names, attributes, whole_disk, partitions, read_only)',
  },
  {
    title: 'wrong type: access as a string',
    document: rule({ access: 'read-only' }),
    rule: 'r',
    field: 'access',
    problem: 'wrong type: expected an array of access modes, got a string ("read-only")',
  },
  {
    title: 'wrong type: exclusive as a string',
    document: rule({ exclusive: 'yes' }),
    rule: 'r',
    field: 'exclusive',
    problem: 'wrong type: expected true or false, got a string ("yes")',
  },
  {
    title: 'wrong type: rules as an object',
    document: { rules: {} },
    field: 'rules',
    problem: 'wrong type: expected an array of rules, got an object',
  },
  {
    title: 'wrong type: a rule that is not an object',
    document: { rules: ['allow-all'] },
    rule: '#0',
    problem: 'wrong type: expected a rule object, got a string ("allow-all")',
  },
  {
    title: 'wrong type: top level is an array',
    document: [],
    problem: 'wrong type: expected an object, got an array',
  },
  {
    title: 'bad glob: unclosed [',
    document: rule({ device: { names: ['loop*', 'loop[0-9'] } }),
    rule: 'r',
    field: 'device.names[1]',
    problem: 'bad glob "loop[0-9": unclosed "[" (escape a literal bracket with a backslash)',
  },
  {
    title: 'bad glob: trailing backslash in an attribute glob',
    document: rule({ device: { attributes: { 'dm/name': 'vm-\\' } } }),
    rule: 'r',
    field: 'device.attributes.dm/name',
    problem: 'bad glob "vm-\\\\": trailing backslash (escape of nothing)',
  },
  {
    title: 'bad glob: empty class',
    document: rule({ device: { names: ['sd[]'] } }),
    rule: 'r',
    field: 'device.names[0]',
    problem: 'bad glob "sd[]": empty character class "[]" (escape a literal bracket with a backslash)',
  },
  {
    title: 'unknown access mode',
    document: { rules: [{ name: 'backup', peer: { uids: ['backup'] }, access: ['read-only', 'rw'] }] },
    rule: 'backup',
    field: 'access[1]',
    problem: 'unknown access mode "rw" (expected read-only, read-write or write-only)',
  },
  {
    title: 'access mode listed twice',
    document: rule({ access: ['read-write', 'read-write'] }),
    rule: 'r',
    field: 'access[1]',
    problem: 'access mode "read-write" listed twice',
  },
  {
    title: 'empty access list',
    document: rule({ access: [] }),
    rule: 'r',
    field: 'access',
    problem: 'empty list matches nothing (omit the field to match anything)',
  },
  {
    title: 'empty rule name',
    document: { rules: [{ name: '', peer: {} }] },
    rule: '#0',
    field: 'name',
    problem: 'empty rule name',
  },
  {
    title: 'missing rule name',
    document: { rules: [{ name: 'ok', peer: {} }, { peer: {} }] },
    rule: '#1',
    field: 'name',
    problem: 'missing (every rule needs a name; it appears in the audit log)',
  },
  {
    title: 'rule name with a control character',
    document: { rules: [{ name: 'a\nb', peer: {} }] },
    rule: '#0',
    field: 'name',
    problem: 'rule name contains a control character',
  },
  {
    title: 'reserved rule name',
    document: { rules: [{ name: 'default-deny', effect: 'deny' }] },
    rule: '#0',
    field: 'name',
    problem: 'rule name "default-deny" is reserved (audit lines use it for decisions no rule made)',
  },
  {
    title: 'duplicate rule name',
    document: { rules: [{ name: 'a', peer: {} }, { name: 'b', peer: {} }, { name: 'a', peer: {} }] },
    rule: '#2',
    field: 'name',
    problem: 'duplicate rule name "a" (also rule #0)',
  },
  {
    title: 'unknown attribute key',
    document: rule({ device: { attributes: { 'dm/nam': 'x' } } }),
    rule: 'r',
    field: 'device.attributes.dm/nam',
    problem: `unknown attribute key "dm/nam" (expected one of ${ATTRIBUTE_KEYS.join(', ')})`,
  },
  {
    title: 'attribute path outside the allow-list',
    document: rule({ device: { attributes: { '../../../etc/shadow': '*' } } }),
    rule: 'r',
    field: 'device.attributes.../../../etc/shadow',
    problem: /^unknown attribute key "\.\.\/\.\.\/\.\.\/etc\/shadow"/,
  },
  {
    title: 'unknown user name',
    document: rule({ peer: { uids: ['alice', 'mallory'] } }),
    rule: 'r',
    field: 'peer.uids[1]',
    problem: /^unknown user name "mallory" \(not in \/.*\/passwd\)$/,
  },
  {
    title: 'unknown group name',
    document: rule({ peer: { groups: ['wheel'] } }),
    rule: 'r',
    field: 'peer.groups[0]',
    problem: /^unknown group name "wheel" \(not in \/.*\/group\)$/,
  },
  {
    title: 'quoted numeric id',
    document: rule({ peer: { gids: ['1000'] } }),
    rule: 'r',
    field: 'peer.gids[0]',
    problem: /^unknown group name "1000" \(not in \/.*\/group; write numeric ids without quotes\)$/,
  },
  {
    title: 'non-integer id',
    document: rule({ peer: { uids: [1000.5] } }),
    rule: 'r',
    field: 'peer.uids[0]',
    problem: 'invalid user id 1000.5 (expected an integer from 0 to 4294967294)',
  },
  {
    title: 'id out of range',
    document: rule({ peer: { gids: [4294967295] } }),
    rule: 'r',
    field: 'peer.gids[0]',
    problem: 'invalid group id 4294967295 (expected an integer from 0 to 4294967294)',
  },
  {
    title: 'uid 0 listed by name',
    document: rule({ peer: { uids: ['root'] } }),
    rule: 'r',
    field: 'peer.uids',
    problem: 'uid 0 (root) is always allowed; rules never apply to it, so it must not be listed',
  },
  {
    title: 'allow rule without peer',
    document: { rules: [{ name: 'everyone?', device: { drivers: ['sd'] } }] },
    rule: 'everyone?',
    field: 'peer',
    problem: 'missing: an allow rule must say which peers it is for (write "peer": {} to mean every local user)',
  },
  {
    title: 'grant fields in a deny rule',
    document: { rules: [{ name: 'no', effect: 'deny', access: ['read-write'] }] },
    rule: 'no',
    field: 'access',
    problem: 'only allowed in allow rules (a deny rule grants nothing, and applies to loop devices too)',
  },
  {
    title: 'unknown effect',
    document: rule({ effect: 'permit' }),
    rule: 'r',
    field: 'effect',
    problem: 'unknown effect "permit" (expected allow or deny)',
  },
  {
    title: 'a device selector that can never match',
    document: rule({ device: { whole_disk: false, partitions: false } }),
    rule: 'r',
    field: 'device',
    problem: '"whole_disk" and "partitions" are both false, so the rule can never match',
  },
  {
    title: 'duplicate key inside a rule',
    document: '{"rules": [\n  {"name": "a", "peer": {}},\n  {"name": "b", "peer": {"uids": [1000], "uids": [1001]}}\n]}',
    rule: 'b',
    field: 'peer.uids',
    problem: 'duplicate key "uids" on line 3 (JSON would silently keep only the last one)',
  },
  {
    title: 'duplicate rule name key',
    document: '{"rules": [{"name": "a", "peer": {}, "name": "b"}]}',
    rule: '#0',
    field: 'name',
    problem: 'duplicate key "name" on line 1 (JSON would silently keep only the last one)',
  },
  {
    title: 'duplicate top-level key',
    document: '{"rules": [], "comment": "x", "rules": []}',
    field: 'rules',
    problem: 'duplicate key "rules" on line 1 (JSON would silently keep only the last one)',
  },
  {
    title: 'invalid JSON',
    document: '{"rules": [',
    problem: /^not valid JSON: /,
  },
];

for (const c of cases) {
  test(`validation: ${c.title}`, (t) => {
    const error = loadError(t, c.document);
    t.is(error.file, FILE);
    t.is(error.rule, c.rule);
    t.is(error.field, c.field);
    if (typeof c.problem === 'string') t.is(error.problem, c.problem);
    else t.regex(error.problem, c.problem);
    // The message is the location prefix followed by the problem, and formatPolicyError
    // prints exactly that.
    let prefix = `${FILE}: `;
    if (c.rule !== undefined) prefix += c.rule.startsWith('#') ? `rule ${c.rule}: ` : `rule "${c.rule}": `;
    if (c.field !== undefined) prefix += `field "${c.field}": `;
    t.is(error.message, prefix + error.problem);
    t.is(formatPolicyError(error), error.message);
  });
}

test('validation: the example message from the issue reads exactly as specified', (t) => {
  const error = loadError(t, { rules: [{ name: 'backup', peer: { uids: ['backup'] }, access: ['read-only', 'rw'] }] });
  t.is(
    error.message,
    'policy.json: rule "backup": field "access[1]": unknown access mode "rw" (expected read-only, read-write or write-only)',
  );
});

test('validation: each kind of mistake has its own message', (t) => {
  const problems = cases.map((c) => loadError(t, c.document).problem);
  t.is(new Set(problems).size, problems.length);
});

test('validation: a valid policy using every field loads completely', (t) => {
  const policy = Policy.fromJSON(
    JSON.stringify({
      comment: 'all fields',
      rules: [
        { name: 'deny-sdz', comment: 'c', effect: 'deny', peer: { uids: [1001] }, device: { names: ['sdz'] } },
        {
          name: 'everything',
          effect: 'allow',
          peer: { uids: ['alice', 1000], gids: ['alice'], groups: ['qubes', 990] },
          device: {
            drivers: ['loop', 'sd'],
            names: ['loop*', 'sd[a-z]'],
            attributes: { 'dm/name': 'x', size: '[1-9]*' },
            whole_disk: true,
            partitions: false,
            read_only: false,
          },
          access: ['read-only', 'read-write', 'write-only'],
          exclusive: true,
          loop_devices: true,
        },
      ],
    }),
    FILE,
    accountFiles(t),
  );
  t.deepEqual(policy.ruleNames, ['deny-sdz', 'everything']);
  t.deepEqual([...policy.attributeKeys].sort(), ['dm/name', 'size']);
  t.is(policy.source, FILE);
});

test('validation: names are only looked up when used, numeric-only policies need no account files', (t) => {
  const missing = { passwdFile: '/nonexistent/passwd', groupFile: '/nonexistent/group' };
  t.notThrows(() => Policy.fromJSON('{"rules":[{"name":"n","peer":{"uids":[1000]}}]}', FILE, missing));
  const error = t.throws(() => Policy.fromJSON('{"rules":[{"name":"n","peer":{"uids":["alice"]}}]}', FILE, missing), {
    instanceOf: PolicyError,
  });
  t.is(error!.field, 'peer.uids[0]');
  t.regex(error!.problem, /^cannot resolve user name "alice": cannot read \/nonexistent\/passwd: /);
});

test('validation: the first entry of a name in the account files wins', (t) => {
  // The fixture passwd lists alice as 1000 and later as 4242.
  const policy = Policy.fromJSON('{"rules":[{"name":"a","peer":{"uids":["alice"]}}]}', FILE, accountFiles(t));
  const sda = { name: 'sda', partition: 0, driver: 'sd', isLoop: false, readOnly: false, attribute: () => undefined };
  t.true(policy.decide({ uid: 1000, gid: 1000, pid: 1, groups: [] }, sda, { access: 'read-only', exclusive: false }).allowed);
  t.false(policy.decide({ uid: 4242, gid: 4242, pid: 1, groups: [] }, sda, { access: 'read-only', exclusive: false }).allowed);
});
