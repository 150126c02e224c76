// mocha runs TypeScript through tsx; no build step.
module.exports = {
  spec: ["test/e2e/**/*.e2e.test.ts"],
  "node-option": ["import=tsx"],
  timeout: 120000,
  exit: true,
  reporter: "spec",
};
