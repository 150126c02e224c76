export * from "./ports";
export * from "./servers";
