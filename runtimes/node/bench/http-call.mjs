// @ts-check
import http from "node:http";

/**
 * One request to a runtime on loopback and its whole answer as text, for the runtime's bench
 * scripts (coldstart.mjs, taken-start.mjs). A fresh connection unless `agent` is given.
 * @param {number} port
 * @param {{ method?: string, path?: string, headers?: Record<string, string>, body?: string | Buffer, agent?: http.Agent | false }} o
 * @returns {Promise<{ status: number, text: string }>}
 */
export function call(port, o = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: o.method ?? "GET",
        path: o.path ?? "/",
        headers: o.headers,
        agent: o.agent ?? false,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}
