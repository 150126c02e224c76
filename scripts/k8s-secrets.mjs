// Prints the platform's Kubernetes Secrets (no real secret is ever committed to k8s/):
//
//   node scripts/k8s-secrets.mjs | kubectl apply -f -
//
// - fizz-credentials: the registry's admin and read tokens and every NATS and Redis password,
//   which each Deployment takes its own of through secretKeyRef;
// - fizz-nats: the nats-server `authorization` block (users and subject permissions);
// - fizz-redis: the Redis ACL file (`default` off, one user per service).
//
// Run again, it generates new secrets (a rotation: restart the pods afterwards). To keep the
// current ones, e.g. to add a user, pass the JSON it saved: `--credentials <file>` reads and
// `--save <file>` (0600) writes the credentials in the format of `.fizz/credentials.json`.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { NATS_USERS, REDIS_USERS, writeSecretFile } from "./lib/credentials.mjs";
import { natsAuthorization, redisAcl } from "./lib/nats-config.mjs";

const args = process.argv.slice(2);
/** @param {string} name */
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const namespace = option("--namespace") ?? "fizz";
const from = option("--credentials");
const saveTo = option("--save");

const secret = () => randomBytes(32).toString("base64url");
/** @type {Partial<import("./lib/credentials.mjs").Credentials>} */
const old = from ? JSON.parse(readFileSync(from, "utf8")) : {};
const creds = {
  adminToken: old.adminToken || secret(),
  readToken: old.readToken || secret(),
  nats: Object.fromEntries(NATS_USERS.map((u) => [u, old.nats?.[u] || secret()])),
  redis: Object.fromEntries(REDIS_USERS.map((u) => [u, old.redis?.[u] || secret()])),
};
if (saveTo) writeSecretFile(saveTo, JSON.stringify(creds, null, 2) + "\n");

/** @param {string} s */
const b64 = (s) => Buffer.from(s).toString("base64");
/**
 * @param {string} name
 * @param {Record<string, string>} data
 */
const secretYaml = (name, data) =>
  [
    "apiVersion: v1",
    "kind: Secret",
    "metadata:",
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    "  labels: { app.kubernetes.io/part-of: fizz }",
    "type: Opaque",
    "data:",
    ...Object.entries(data).map(([k, v]) => `  ${k}: ${b64(v)}`),
  ].join("\n");

const credentials = {
  "admin-token": creds.adminToken,
  "read-token": creds.readToken,
  ...Object.fromEntries(NATS_USERS.map((u) => [`nats-${u}-password`, creds.nats[u]])),
  ...Object.fromEntries(REDIS_USERS.map((u) => [`redis-${u}-password`, creds.redis[u]])),
};
process.stdout.write(
  [
    secretYaml("fizz-credentials", credentials),
    secretYaml("fizz-nats", { "auth.conf": await natsAuthorization({ passwords: creds.nats }) }),
    secretYaml("fizz-redis", { "users.acl": await redisAcl({ passwords: creds.redis }) }),
  ].join("\n---\n") + "\n",
);
