// Security suite: each attack from issue 9 against the real platform (scripts/lib/platform.mjs with
// the credentials it generates), asserting it is refused.
module.exports = {
  spec: ["test/security/**/*.security.test.ts"],
  "node-option": ["import=tsx"],
  timeout: 120000,
  exit: true,
  reporter: "spec",
};
