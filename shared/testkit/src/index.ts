export * from "./ports";
export * from "./servers";
export * from "./k8s";
export * from "./nginx";
export * from "./fake-clock";
export * from "./fake-registry-bus";
export * from "./abort-dependants";
