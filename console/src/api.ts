/**
 * Talking to the registry. The admin token lives in sessionStorage (gone with the tab) and goes
 * only into the Authorization header of same-origin fetches, never into a URL. A 401 forgets it
 * and sends the user back to the sign-in form.
 */
const KEY = "fizz.token";

export class SignInNeeded extends Error {
  constructor() {
    super("sign in with the admin token");
  }
}

export const token = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (t: string): void => sessionStorage.setItem(KEY, t),
  clear: (): void => sessionStorage.removeItem(KEY),
};

let onSignOut: () => void = () => undefined;
export function whenSignedOut(fn: () => void): void {
  onSignOut = fn;
}

export async function call(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  const t = token.get();
  if (t === null) {
    onSignOut();
    throw new SignInNeeded();
  }
  const headers: Record<string, string> = { authorization: `Bearer ${t}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    credentials: "omit",
    cache: "no-store",
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    ...(signal ? { signal } : {}),
  });
  if (res.status === 401) {
    token.clear();
    onSignOut();
    throw new SignInNeeded();
  }
  return res;
}

/** JSON of a 2xx answer; otherwise the registry's error message. */
export async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await call(method, path, body);
  const data: unknown = await res.json().catch(() => undefined);
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new Error(`${res.status} ${e?.code ?? ""}: ${e?.message ?? res.statusText}`);
  }
  return data as T;
}

export const fnPath = (ns: string, name: string): string =>
  `/v1/namespaces/${encodeURIComponent(ns)}/functions/${encodeURIComponent(name)}`;

/** Reads an NDJSON body line by line until it ends or `signal` aborts. */
export async function readLines(
  res: Response,
  onLine: (line: string) => void,
  signal: AbortSignal,
): Promise<void> {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const stop = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener("abort", stop, { once: true });
  let buf = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() !== "") onLine(line);
      }
    }
    if (buf.trim() !== "") onLine(buf);
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
