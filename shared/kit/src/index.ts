export * from "./logger";
export * from "./backoff";
export * from "./config";
export * from "./nats";
export * from "./redis";
export * from "./ops";
export * from "./lifecycle";
export * from "./jetstream";
