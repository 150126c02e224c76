// Fault suite: kill -9 each component of the real platform (started by scripts/lib/platform.mjs,
// supervisor included) under load. Bounded: the whole stage runs in a few minutes.
module.exports = {
  spec: ["test/fault/**/*.fault.test.ts"],
  "node-option": ["import=tsx"],
  timeout: 120000,
  exit: true,
  reporter: "spec",
};
