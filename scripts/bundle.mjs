// Bundles the services (scripts/lib/service-build.mjs) into dist/: dist/<service>.mjs for each and
// the chunks they share in dist/chunks/. The images copy one entry and the chunks; `npm start` and
// the tests rebuild on their own when a source changed. `node scripts/bundle.mjs [service...]`
// (all five are built at once either way: they share chunks).
import { buildServices, SERVICE_NAMES } from "./lib/service-build.mjs";

for (const svc of process.argv.slice(2))
  if (!SERVICE_NAMES.includes(svc))
    throw new Error(`unknown service "${svc}"; one of ${SERVICE_NAMES.join(", ")}`);
for (const entry of await buildServices()) console.log(entry);
