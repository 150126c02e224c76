/**
 * Build spinners and the lines printed meanwhile, on a fake terminal: stdout and stderr write to
 * one screen that `\r`, `\x1b[K` and `\n` act on as a real terminal's do, so a spinner left on
 * the row a result line is printed to shows up as one garbled row.
 */
import { expect } from "chai";
import type { Context } from "../src/context.js";
import { executePlan } from "../src/spec/apply.js";
import { printResult } from "../src/spec/report.js";
import { StatusLine } from "../src/status-line.js";
import { FakeRegistry, contextOf, item } from "./spec-apply-fakes.js";

/** A screen: rows of text and a cursor; only what the CLI writes is understood. */
class Screen {
  readonly rows: string[] = [""];
  private row = 0;
  private col = 0;
  feed(text: string): void {
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (text.startsWith("\x1b[K", i)) {
        this.rows[this.row] = this.rows[this.row]!.slice(0, this.col);
        i += 2;
      } else if (c === "\r") this.col = 0;
      else if (c === "\n") {
        this.row++;
        this.col = 0;
        this.rows[this.row] ??= "";
      } else {
        const r = this.rows[this.row]!.padEnd(this.col);
        this.rows[this.row] = r.slice(0, this.col) + c + r.slice(this.col + 1);
        this.col++;
      }
    }
  }
}

/** The terminal's stdout and stderr (a TTY of `columns`), both drawing on one screen. */
function terminal(columns = 200) {
  const screen = new Screen();
  const raw: string[] = [];
  const write = (chunk: string) => {
    raw.push(chunk);
    screen.feed(chunk);
    return true;
  };
  return {
    screen,
    raw,
    stdout: { write, isTTY: true, columns },
    stderr: { write, isTTY: true, columns },
  };
}

describe("build spinners and the lines printed while they run", () => {
  it("a line printed while a spinner shows gets a row of its own, and the spinner is drawn again below it", () => {
    const t = terminal();
    const line = new StatusLine(t.stderr);
    const id = Symbol("a");
    line.set(id, '| package "a": running (1s)');
    line.print(t.stdout, "created function f\n");
    expect(t.screen.rows).to.deep.equal(["created function f", '| package "a": running (1s)']);
    line.remove(id);
    expect(t.screen.rows).to.deep.equal(["created function f", ""]);
  });

  it("waits side by side share one spinner row; the last one gone leaves it empty", () => {
    const t = terminal();
    const line = new StatusLine(t.stderr);
    const [a, b] = [Symbol("a"), Symbol("b")];
    line.set(a, "| a");
    line.set(b, "| b");
    line.set(a, "/ a");
    expect(t.screen.rows).to.deep.equal(["/ a  | b"]);
    line.remove(a);
    line.print(t.stdout, "created package a\n");
    line.remove(b);
    expect(t.screen.rows).to.deep.equal(["created package a", ""]);
  });

  it("a spinner never continues a partial line, and fits the terminal's width so it never wraps", () => {
    const t = terminal(12);
    const line = new StatusLine(t.stderr);
    const id = Symbol("a");
    line.print(t.stderr, "half a ");
    line.set(id, "| a long spinner text");
    expect(t.screen.rows).to.deep.equal(["half a "]);
    line.print(t.stderr, "line\n");
    expect(t.screen.rows).to.deep.equal(["half a line", "| a long s…"]);
    expect(t.screen.rows[1]).to.have.length(11);
  });

  it("off a terminal it draws nothing and prints the lines as they are", () => {
    const out: string[] = [];
    const pipe = { write: (s: string) => out.push(s) };
    const line = new StatusLine(pipe);
    const id = Symbol("a");
    line.set(id, "| a");
    line.print(pipe, "created function f\n");
    line.remove(id);
    expect(out).to.deep.equal(["created function f\n"]);
  });

  it("apply: result lines of packages built side by side never share a row with a spinner", async () => {
    const fake = new FakeRegistry();
    const t = terminal();
    const ctx = { ...contextOf(fake), stdout: t.stdout, stderr: t.stderr } as unknown as Context;
    const plan = [
      item("create", "environments", "go"),
      item("create", "packages", "a", { environment: "go" }),
      item("create", "packages", "b", { environment: "go" }),
      item("create", "packages", "c", { environment: "go" }),
      item("create", "functions", "f", { environment: "go", package: { name: "a" } }),
    ];
    // b is written last and built last: a and c are printed while its spinner runs.
    fake.delays.set("packages/b", 120);

    await executePlan(ctx, plan, {
      spec: "demo",
      waitTimeoutSeconds: 5,
      onResult: (r) => printResult(ctx, r),
    });

    expect(t.raw.join("")).to.match(/package "b": pending/);
    expect(t.screen.rows.map((r) => r.replace(/ \(deployment .*\)$/, ""))).to.deep.equal([
      "created environment go",
      "created package a",
      "created package b",
      "created package c",
      "created function f",
      "",
    ]);
  });
});
