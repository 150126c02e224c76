// Suites against a real Kubernetes API server (tools/k8s-lite) with pods run by tools/procnode.
module.exports = {
  spec: [
    "services/*/test/**/*.k8s.test.ts",
    "tools/*/test/**/*.k8s.test.ts",
    "test/k8s/**/*.k8s.test.ts",
  ],
  "node-option": ["import=tsx"],
  timeout: 180000,
  exit: true,
  reporter: "spec",
};
