import { describe, it } from 'vitest';
import { checkOp, SEED, useDevice } from './helpers.js';
import { smokeChecks } from './smoke-checks.js';

// The same checks the headless-browser test runs, here on Dawn in Node.
const dev = useDevice();
describe('smoke checks (Node)', () => {
  for (const c of smokeChecks(SEED)) it(c.name, () => checkOp(dev(), c));
});
