/**
 * `fizz <kind> delete --name X [--ignore-not-found]`: one action for every kind, so the
 * not-found rule (kubectl's, and Fission's --ignorenotfound) and the IN_USE hint cannot drift
 * between commands.
 */
import type { Command } from "commander";
import type { Kind } from "../client.js";
import { confirm, type ContextFactory } from "../context.js";
import { ApiError, withHint } from "../errors.js";
import { unlessMissing, type IgnoreOptions } from "./fission-flags.js";

/** `noun` names the object in the confirmation; `inUse` is the hint added to an IN_USE refusal. */
export function deleteAction(context: ContextFactory, kind: Kind, noun: string, inUse?: string) {
  return async (opts: { name: string } & IgnoreOptions, cmd: Command): Promise<void> => {
    const ctx = context(cmd);
    try {
      const deleted = await ctx.registry
        .delete<unknown>(kind, opts.name)
        .catch(unlessMissing(opts));
      if (deleted) confirm(ctx, deleted, `${noun} "${opts.name}" deleted`);
    } catch (err) {
      if (inUse !== undefined && err instanceof ApiError && err.code === "IN_USE")
        throw withHint(err, inUse);
      throw err;
    }
  };
}
