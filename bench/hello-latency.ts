// First (cold) and second (warm) request latency of the hello-world functions through the gateway,
// on the embedded platform: `node --import tsx bench/hello-latency.ts`. Each sample is a new
// function (so its first request is a real cold start from the warm pool); medians are printed.
import path from "node:path";
import { code, startBenchPlatform } from "./lib/platform";
import { percentile, round } from "./lib/stats";

const SAMPLES = Number(process.env.SAMPLES ?? 10);
const hello = {
  python: {
    image: "fizz/env-python",
    file: "hello.py",
    text: 'def main(context):\n    print("Hello, world!")\n',
  },
  node: {
    image: "fizz/env-node",
    file: "hello.js",
    text: 'module.exports = async (context) => ({ status: 200, body: "Hello, world!\\n" });\n',
  },
};

async function timed(url: string) {
  const t = performance.now();
  const res = await fetch(url);
  const body = await res.text();
  if (res.status !== 200 || body !== "Hello, world!\n")
    throw new Error(`${url}: ${res.status} ${body}`);
  return performance.now() - t;
}

const p = await startBenchPlatform(path.join(import.meta.dirname, "results", "hello-latency.log"));
try {
  for (const [rt, h] of Object.entries(hello)) {
    await p.api("POST", "/v1/namespaces/default/environments", {
      name: rt,
      spec: { image: h.image, poolSize: 3 },
    });
  }
  await new Promise((r) => setTimeout(r, 2000));
  await timed(`${p.gatewayUrl}/function/none`).catch(() => undefined); // open the client connection
  for (const [rt, h] of Object.entries(hello)) {
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const name = `hello-${rt}-${i}`;
      await p.api("POST", "/v1/namespaces/default/functions", {
        name,
        spec: { environment: rt, code: code(h.file, h.text) },
      });
      await p.api("POST", "/v1/namespaces/default/httptriggers", {
        name,
        spec: { function: name, path: `/${name}` },
      });
      await new Promise((r) => setTimeout(r, 300)); // let the pool refill between samples
      cold.push(await timed(`${p.gatewayUrl}/${name}`));
      warm.push(await timed(`${p.gatewayUrl}/${name}`));
    }
    console.log(
      `${rt}: cold p50 ${round(percentile(cold, 50))} ms (min ${round(Math.min(...cold))}, max ${round(Math.max(...cold))}); warm p50 ${round(percentile(warm, 50))} ms (min ${round(Math.min(...warm))}, max ${round(Math.max(...warm))}); n=${SAMPLES}`,
    );
  }
} finally {
  await p.stop();
}
