// mocha runs TypeScript through tsx; no build step.
module.exports = {
  spec: [
    "shared/*/test/**/*.unit.test.ts",
    "services/*/test/**/*.unit.test.ts",
    "cli/test/**/*.unit.test.ts",
    "tools/*/test/**/*.unit.test.ts",
  ],
  "node-option": ["import=tsx"],
  timeout: 10000,
  exit: true,
  reporter: "spec",
};
