/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    // tsconfig's isolatedModules makes ts-jest transpile only; `npm run build` (tsc) type-checks once.
    '^.+\\.tsx?$': 'ts-jest',
  },
  // Synthesizing a stack takes a few seconds on a 2-core machine.
  testTimeout: 60000,
};
