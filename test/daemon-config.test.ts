// Daemon options whose bounds differ from the plain positive counts of src/config.ts.
import test from 'ava';
import { parseCommandLine, type Config } from '../src/config.js';

const config = (...argv: string[]): Config => (parseCommandLine(argv) as { kind: 'run'; config: Config }).config;

test('--device-thread-spin-us: 500 by default, 0 turns the spin off, at most 100000', (t) => {
  t.is(config().deviceThreadSpinUs, 500);
  t.is(config('--device-thread-spin-us', '0').deviceThreadSpinUs, 0);
  t.is(config('--device-thread-spin-us', '100000').deviceThreadSpinUs, 100_000);
  t.throws(() => config('--device-thread-spin-us', '100001'), { message: /at most 100000/ });
  t.throws(() => config('--device-thread-spin-us=-1'), { message: /whole number/ });
  t.throws(() => config('--device-thread-spin-us', '00'), { message: /whole number/ });
});
