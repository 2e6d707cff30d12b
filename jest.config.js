/** Jest runs the TypeScript sources directly (ts-jest, transpile-only for speed; `npm run typecheck` type-checks tests too). */
module.exports = {
  testEnvironment: '<rootDir>/test/helpers/jest-environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.check.json' }] },
  testTimeout: 120000,
  maxWorkers: 2,
};
