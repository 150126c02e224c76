import { pathToFileURL } from "node:url";

type Rows = [string, string, string][];

/**
 * A bench module run on its own (`npx tsx bench/<file>.ts`): when `moduleUrl` is the script node
 * was started with, runs `measure`, prints its figures as JSON and as table rows, and exits.
 */
export function runIfMain<T>(moduleUrl: string, measure: () => Promise<T>, rows: (f: T) => Rows) {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  measure().then(
    (f) => {
      console.log(JSON.stringify(f, null, 2));
      console.log(
        rows(f)
          .map((r) => `${r[0]}  ${r[1]}  ${r[2]}`)
          .join("\n"),
      );
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
