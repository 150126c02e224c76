export * from "./errors";
export * from "./names";
export * from "./objects";
export * from "./subjects";
export * from "./messages";
export * from "./codec";
export * from "./runtime-images";
export * from "./redis-keys";
