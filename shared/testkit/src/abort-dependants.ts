/**
 * How many signals Node holds as derived from `signal` (AbortSignal.any's results, kept as
 * WeakRefs in an internal set that Node 20 never prunes), 0 when it holds none. For tests that
 * a service-long signal is left with nothing per operation (linkedSignal in @fizz/kit says why).
 */
export function abortDependants(signal: AbortSignal): number {
  const sym = Object.getOwnPropertySymbols(signal).find(
    (s) => s.description === "kDependantSignals",
  );
  // Node's internal SafeSet: a Set from its own primordials, so not `instanceof Set` here.
  const set =
    sym === undefined ? undefined : (signal as unknown as Record<symbol, { size?: unknown }>)[sym];
  return typeof set?.size === "number" ? set.size : 0;
}
