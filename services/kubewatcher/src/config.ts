import { int, loadCommon, str, type CommonConfig, type Env } from "@fizz/kit";

export interface KubewatcherConfig extends CommonConfig {
  host: string;
  port: number;
}

export function loadConfig(env: Env): KubewatcherConfig {
  return {
    ...loadCommon(env),
    host: str(env, "FIZZ_KUBEWATCHER_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_KUBEWATCHER_PORT", 0, 0, 65535),
  };
}
