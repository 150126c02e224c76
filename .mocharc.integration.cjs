// mocha runs TypeScript through tsx; no build step.
module.exports = {
  spec: [
    "shared/*/test/**/*.int.test.ts",
    "services/*/test/**/*.int.test.ts",
    "runtimes/*/test/**/*.int.test.ts",
    "cli/test/**/*.int.test.ts",
    "test/integration/**/*.int.test.ts",
  ],
  "node-option": ["import=tsx"],
  timeout: 60000,
  exit: true,
  reporter: "spec",
};
