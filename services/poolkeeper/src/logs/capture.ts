import {
  CALL_MARKER_PREFIX,
  CALL_MARKER_SUFFIX,
  parseCallMarker,
  type FunctionRef,
  type LogLine,
} from "@fizz/events";
import type { Clock, Logger } from "@fizz/kit";
import type { Backend, BackendInstance, ExitInfo, OutputStream } from "../backend";
import type { Tracked } from "../instances";
import { CUT_MARK, cutLine, type LineGate } from "../lines";
import { dropAnnouncement, LogBudget, type LogLimits } from "./budget";
import type { LogMetrics } from "./log-metrics";
import { Masker, type SecretBook } from "./mask";

export interface LogCaptureOptions {
  /** Fire and forget (a core NATS publish the stream captures); never awaited per line. */
  publish(fn: FunctionRef, line: LogLine): void;
  /** The pool's record of an instance (its state and function), while it has one. */
  tracked(id: string): Tracked | undefined;
  limits: LogLimits;
  /** The poolkeeper-wide budget every instance's lines also take from (FIZZ_LOG_TOTAL_*). */
  totalLimits?: LogLimits;
  maxLineBytes: number;
  book: SecretBook;
  /** The poolkeeper's own credentials, masked in every instance's output. */
  platformSecrets: readonly string[];
  metrics: LogMetrics;
  logger: Logger;
  clock: Pick<Clock, "now" | "after">;
  /**
   * FIZZ_LOG_ECHO: a function's published lines also go to the poolkeeper's own log at info, so
   * `npm start` shows them in its terminal (`default/hello | …`). Off in a cluster, where they would
   * be stored twice. Echoed lines are past the budget and masked, like published ones.
   */
  echo?: boolean;
}

interface Entry {
  instance: BackendInstance;
  budget: LogBudget;
  /** The backend applies the budget before decoding (gate()); otherwise line() does. */
  gated: boolean;
  /** Per stream: the call a line belongs to, from the last call marker on that stream. */
  requestIds: Partial<Record<OutputStream, string>>;
  masker?: Masker;
  maskerKey?: string;
  cancelAnnounce?: (() => void) | undefined;
}

const ANNOUNCE_EVERY_MS = 1_000;

/**
 * Function output, line by line: call markers removed (they set the request id of the lines
 * after them on the same stream), lines tagged, secrets masked, each instance held to its budget,
 * drops counted and announced once a second, and the way an instance ended said last. An
 * instance's lines are published from the moment it is assigned to a function (`assign`, before
 * its code loads: import-time prints and a load failure's output are the function's); a warm one's
 * are the generic runtime's and go to the debug log only.
 */
export class LogCapture {
  private readonly entries = new Map<string, Entry>();
  /** Instances taken for a function and still loading it; forgotten on exit or once specialized. */
  private readonly assigned = new Map<string, FunctionRef>();
  /** When each live instance was assigned: a line written before is not its function's. */
  private readonly assignedAt = new Map<string, number>();
  private readonly log: Logger;
  private readonly total: LogBudget | undefined;

  constructor(private readonly opts: LogCaptureOptions) {
    this.log = opts.logger.child({ component: "function-logs" });
    this.total = opts.totalLimits
      ? new LogBudget(opts.totalLimits, opts.clock, opts.maxLineBytes)
      : undefined;
  }

  /**
   * Listens to the backend's output and exits. Call before the Pool is built: the exit listener
   * must run before the pool's (which forgets the instance and announces `died`), so the last
   * lines and the exit line are published first.
   */
  attach(backend: Pick<Backend, "onOutput" | "onExit">): void {
    backend.onOutput((instance, stream, line, writtenAt) =>
      this.line(instance, stream, line, writtenAt),
    );
    backend.onExit((instance, info) => this.exited(instance, info));
  }

  /** The budget of one stream of an instance, for a backend that splits bytes itself. */
  gate(instance: BackendInstance, stream: OutputStream): LineGate & { release(): void } {
    const e = this.entry(instance, true);
    return {
      refill: () => e.budget.refill(),
      exhausted: () => e.budget.exhausted(),
      admit: (bytes) => e.budget.admit(bytes),
      dropped: (lines, bytes) => e.budget.dropped(lines, bytes),
      settle: (lines, markerLost) => this.settle(e, stream, lines, markerLost),
      release: () => {
        if (this.entries.get(instance.id) === e) this.drop(e);
      },
    };
  }

  /** The instance was taken to load `fn`: what it prints from now on is that function's. */
  assign(instanceId: string, fn: FunctionRef): void {
    this.assigned.set(instanceId, fn);
    this.assignedAt.set(instanceId, this.opts.clock.now());
  }

  /** `writtenAt`: a late line (pod logs) written while the instance was warm stays untagged. */
  line(instance: BackendInstance, stream: OutputStream, raw: string, writtenAt?: number): void {
    let e = this.entries.get(instance.id);
    if (!e) {
      // Output of an instance the pool does not know (yet, or any more): nobody owns it.
      if (!this.opts.tracked(instance.id)) return;
      e = this.entry(instance, false);
    }
    let text = raw;
    if (!e.gated) {
      if (Buffer.byteLength(text) > this.opts.maxLineBytes)
        text = cutLine(text, this.opts.maxLineBytes);
      e.budget.refill();
      if (!e.budget.admit(Buffer.byteLength(text))) {
        this.settle(e, stream, 1, parseCallMarker(text) !== undefined);
        return;
      }
    }
    let marker = parseCallMarker(text);
    if (marker === undefined && text.endsWith(CALL_MARKER_SUFFIX)) {
      // A marker glued to an unterminated line (Go and PHP cannot always end the function's last
      // partial line first): the text before it is the previous owner's line, then the marker.
      const at = text.lastIndexOf(CALL_MARKER_PREFIX);
      marker = at > 0 ? parseCallMarker(text.slice(at)) : undefined;
      if (marker !== undefined) this.emit(e, instance, stream, text.slice(0, at), writtenAt);
    }
    if (marker !== undefined) {
      if (marker) e.requestIds[stream] = marker;
      else delete e.requestIds[stream];
      return;
    }
    this.emit(e, instance, stream, text, writtenAt);
  }

  private emit(
    e: Entry,
    instance: BackendInstance,
    stream: OutputStream,
    text: string,
    writtenAt: number | undefined,
  ): void {
    const fn = this.functionOf(instance.id, writtenAt);
    const echo = fn !== undefined && this.opts.echo === true;
    const wantDebug = echo || this.log.isLevelEnabled("debug");
    if (!fn && !wantDebug) return;
    const masker = this.maskerOf(e, fn);
    const line = text.endsWith(CUT_MARK)
      ? masker.maskWithTail(text.slice(0, -CUT_MARK.length)) + CUT_MARK
      : masker.mask(text);
    const requestId = e.requestIds[stream];
    if (wantDebug)
      this.log[echo ? "info" : "debug"](
        {
          instance: instance.id,
          ...(fn ? { function: `${fn.namespace}/${fn.name}` } : {}),
          stream,
          ...(requestId ? { requestId } : {}),
        },
        line,
      );
    if (fn) this.publish(e, fn, stream, line, requestId);
  }

  exited(instance: BackendInstance, info: ExitInfo): void {
    const e = this.entries.get(instance.id);
    const fn = this.functionOf(instance.id);
    this.assigned.delete(instance.id);
    this.assignedAt.delete(instance.id);
    if (e) {
      e.cancelAnnounce?.();
      e.cancelAnnounce = undefined;
      if (fn) this.announce(e, fn);
      this.drop(e);
    }
    if (fn) {
      const masker = e ? this.maskerOf(e, fn) : this.newMasker(instance, fn);
      this.publishSystem(instance, fn, masker.mask(exitLine(info)));
    }
  }

  /** Masks what the poolkeeper says about an instance (a died reason quotes its stderr). */
  mask(instance: BackendInstance, fn: FunctionRef | undefined, text: string): string {
    return this.newMasker(instance, fn).mask(text);
  }

  close(): void {
    for (const e of this.entries.values()) e.cancelAnnounce?.();
    this.entries.clear();
    this.assigned.clear();
    this.assignedAt.clear();
  }

  /** Whose lines these are: the function a specialized or loading instance belongs to. */
  private functionOf(id: string, writtenAt?: number): FunctionRef | undefined {
    if (writtenAt !== undefined && writtenAt < (this.assignedAt.get(id) ?? -Infinity))
      return undefined;
    const t = this.opts.tracked(id);
    if (t?.state === "specialized") {
      if (this.assigned.size > 0) this.assigned.delete(id);
      return t.function;
    }
    return t?.state === "specializing" ? this.assigned.get(id) : undefined;
  }

  private entry(instance: BackendInstance, gated: boolean): Entry {
    let e = this.entries.get(instance.id);
    if (!e) {
      e = {
        instance,
        budget: new LogBudget(
          this.opts.limits,
          this.opts.clock,
          this.opts.maxLineBytes,
          this.total,
        ),
        gated,
        requestIds: {},
      };
      this.entries.set(instance.id, e);
    }
    return e;
  }

  private drop(e: Entry): void {
    e.cancelAnnounce?.();
    this.entries.delete(e.instance.id);
  }

  private settle(e: Entry, stream: OutputStream, lines: number, markerLost: boolean): void {
    // A lost marker leaves the stream's call unknown: untagged lines beat mislabelled ones.
    if (markerLost) delete e.requestIds[stream];
    const fn = this.functionOf(e.instance.id);
    if (!fn) {
      e.budget.takeDrops();
      return;
    }
    this.opts.metrics.dropped.inc({ namespace: fn.namespace, function: fn.name }, lines);
    e.cancelAnnounce ??= this.opts.clock.after(ANNOUNCE_EVERY_MS, () => {
      e.cancelAnnounce = undefined;
      const now = this.functionOf(e.instance.id);
      if (now) this.announce(e, now);
    });
  }

  private announce(e: Entry, fn: FunctionRef): void {
    const drops = e.budget.takeDrops();
    if (drops)
      this.publishSystem(
        e.instance,
        fn,
        dropAnnouncement(drops, this.opts.limits, this.opts.totalLimits),
      );
  }

  private maskerOf(e: Entry, fn: FunctionRef | undefined): Masker {
    const book = this.opts.book;
    const key = fn ? `${fn.namespace}#${book.version(fn.namespace)}` : `*#${book.generation}`;
    if (!e.masker || e.maskerKey !== key) {
      e.masker = this.newMasker(e.instance, fn);
      e.maskerKey = key;
    }
    return e.masker;
  }

  private newMasker(instance: BackendInstance, fn: FunctionRef | undefined): Masker {
    const book = this.opts.book;
    return new Masker([
      ...this.opts.platformSecrets,
      ...(instance.specializeToken ? [instance.specializeToken] : []),
      ...(fn ? book.values(fn.namespace) : book.allValues()),
    ]);
  }

  private publish(
    e: Entry,
    fn: FunctionRef,
    stream: LogLine["stream"],
    line: string,
    requestId?: string,
  ): void {
    this.opts.publish(fn, {
      namespace: fn.namespace,
      function: fn.name,
      revision: fn.revision,
      instanceId: e.instance.id,
      stream,
      line,
      ts: this.opts.clock.now(),
      ...(requestId ? { requestId } : {}),
    });
  }

  private publishSystem(instance: BackendInstance, fn: FunctionRef, line: string): void {
    this.opts.publish(fn, {
      namespace: fn.namespace,
      function: fn.name,
      revision: fn.revision,
      instanceId: instance.id,
      stream: "system",
      line,
      ts: this.opts.clock.now(),
    });
  }
}

/** How an instance ended, as its last line: "fizz: instance exited with code 1". */
export function exitLine(info: ExitInfo): string {
  const how = info.signal ? `killed by ${info.signal}` : `exited with code ${info.code ?? "?"}`;
  return info.expected
    ? `fizz: instance stopped (${info.reason}); ${how}`
    : `fizz: instance ${how}`;
}
