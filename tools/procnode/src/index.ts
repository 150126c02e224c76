export { startProcnode } from "./procnode";
export { defaultImageMap, parseImage, type ImageMap, type ImageRun } from "./images";
export type { ContainerInfo, PodInfo, Procnode, ProcnodeOptions } from "./types";
