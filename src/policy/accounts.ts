/**
 * User and group names for policy rules, resolved from the files themselves
 * (/etc/passwd, /etc/group) when the policy is loaded. NSS sources (LDAP, systemd
 * DynamicUser, homed) are not consulted: a root daemon should not depend on a directory
 * service to decide who may open a disk. Use numeric ids for such accounts.
 */
import { readFileSync } from 'node:fs';

/** Where the account files are; tests point these at their own files. */
export interface AccountFiles {
  passwdFile?: string;
  groupFile?: string;
}

/** Default account file locations. */
export const DEFAULT_ACCOUNT_FILES: Required<AccountFiles> = Object.freeze({
  passwdFile: '/etc/passwd',
  groupFile: '/etc/group',
});

/** A user of the passwd file. */
export interface Account {
  name: string;
  uid: number;
  /** The primary group. */
  gid: number;
}

/** Name-to-id lookup, reading each file at most once and only if a name needs it. */
export class AccountResolver {
  private users?: Map<string, number>;
  private groups?: Map<string, number>;
  private accounts?: Account[];
  private memberships?: Array<{ gid: number; members: string[] }>;
  private readonly files: Required<AccountFiles>;

  constructor(files: AccountFiles = {}) {
    this.files = { ...DEFAULT_ACCOUNT_FILES, ...files };
  }

  /** The uid of a user name, or undefined. Throws (with the file named) if the file is unreadable. */
  uid(name: string): number | undefined {
    this.users ??= parseIdFile(this.files.passwdFile, 2);
    return this.users.get(name);
  }

  /** The gid of a group name, or undefined. Throws if the file is unreadable. */
  gid(name: string): number | undefined {
    this.groups ??= parseIdFile(this.files.groupFile, 2);
    return this.groups.get(name);
  }

  /** The first passwd entry with this uid, or undefined. Throws if the file is unreadable. */
  accountOf(uid: number): Account | undefined {
    this.accounts ??= parseLines(this.files.passwdFile, (columns) => {
      const [name, , uidText, gidText] = columns;
      return name && isId(uidText) && isId(gidText) ? { name, uid: Number(uidText), gid: Number(gidText) } : undefined;
    });
    return this.accounts.find((account) => account.uid === uid);
  }

  /** The gids of the groups that list `user` as a member (what initgroups(3) adds), in file order. */
  supplementaryGroupsOf(user: string): number[] {
    this.memberships ??= parseLines(this.files.groupFile, (columns) => {
      const [name, , gidText, members] = columns;
      return name && isId(gidText) ? { gid: Number(gidText), members: (members ?? '').split(',').filter((m) => m !== '') } : undefined;
    });
    return this.memberships.filter((group) => group.members.includes(user)).map((group) => group.gid);
  }

  /** The passwd file's path, for messages. */
  get passwdFile(): string {
    return this.files.passwdFile;
  }

  /** The group file's path, for messages. */
  get groupFile(): string {
    return this.files.groupFile;
  }
}

/**
 * Parse a colon-separated account file: name in column 0, numeric id in column idColumn.
 * Comments, blank lines, NIS `+`/`-` lines and malformed lines are skipped; the first
 * entry for a name wins, as in glibc's files backend.
 */
function parseIdFile(path: string, idColumn: number): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  const ids = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const columns = line.split(':');
    const name = columns[0];
    const idText = columns[idColumn];
    if (name === '' || idText === undefined || !/^[0-9]{1,10}$/.test(idText)) continue;
    const id = Number(idText);
    if (id > 0xfffffffe) continue;
    if (!ids.has(name)) ids.set(name, id);
  }
  return ids;
}

function isId(text: string | undefined): text is string {
  return text !== undefined && /^[0-9]{1,10}$/.test(text) && Number(text) <= 0xfffffffe;
}

/** The entries `parse` makes of an account file's lines (comments, NIS lines and malformed lines skipped). */
function parseLines<T>(path: string, parse: (columns: string[]) => T | undefined): T[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  const entries: T[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const entry = parse(line.split(':'));
    if (entry !== undefined) entries.push(entry);
  }
  return entries;
}
