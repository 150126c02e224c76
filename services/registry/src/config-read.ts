import {
  FizzError,
  type ConfigReadReply,
  type ConfigReadRequest,
  type ConfigValues,
} from "@fizz/events";
import { noSecretKey, type SecretBox } from "./secret-box";
import type { Store } from "./store";

/**
 * `registry.config.read`: the values of a function's secrets (decrypted) and configmaps, base64
 * per key, for the poolkeeper to hand to an instance at specialize. Only the poolkeeper's NATS
 * user may publish this subject (shared/events permissions.ts); the gateway and the app user are
 * denied, so the registry's bus is the only place plaintext secrets leave through.
 */
export async function readConfig(
  store: Store,
  box: SecretBox | undefined,
  req: ConfigReadRequest,
): Promise<ConfigReadReply> {
  const ns = req.namespace;
  const secrets: ConfigValues[] = [];
  for (const name of req.secrets) {
    const sealed = await store.getSecretData(ns, name);
    if (sealed === undefined) throw missing("secret", ns, name);
    if (!box) throw noSecretKey();
    secrets.push({ name, data: box.open(ns, name, sealed) });
  }
  const configmaps: ConfigValues[] = [];
  for (const name of req.configmaps) {
    const cm = await store.get("configmaps", ns, name);
    if (!cm) throw missing("configmap", ns, name);
    const data = Object.fromEntries(
      Object.entries(cm.spec.data).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")]),
    );
    configmaps.push({ name, data });
  }
  return { secrets, configmaps };
}

function missing(what: "secret" | "configmap", ns: string, name: string): FizzError {
  return new FizzError("MISSING_CONFIG", `${what} ${ns}/${name} does not exist`, {
    field: what === "secret" ? "secrets" : "configmaps",
  });
}
