/**
 * A line chart as plain SVG: a few series of up to 360 points each need no charting library, and
 * SVG attributes (no inline styles) keep the page within its strict Content-Security-Policy.
 */
const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 150;
const PAD = { left: 48, right: 8, top: 10, bottom: 20 };

export interface Series {
  label: string;
  /** CSS class of the line (colour comes from style.css). */
  cls: string;
  values: (number | null)[];
}

function el(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function fmt(v: number): string {
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 10) return v.toFixed(0);
  return v.toFixed(v === 0 ? 0 : 2);
}

/** Draws `series` over `times` (ms) into a fresh <svg>; `unit` labels the axis. */
export function lineChart(times: number[], series: Series[], unit: string): SVGSVGElement {
  const svg = el("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-label": series.map((s) => s.label).join(", "),
  }) as SVGSVGElement;
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const max = Math.max(...all, 0) || 1;
  const n = Math.max(times.length - 1, 1);
  const x = (i: number) => PAD.left + (i / n) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  svg.appendChild(
    el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: "axis" }),
  );
  svg.appendChild(
    el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max), y2: y(max), class: "grid" }),
  );
  const label = (tx: string, ax: number, ay: number, anchor: string) => {
    const t = el("text", { x: ax, y: ay, "text-anchor": anchor, class: "tick" });
    t.textContent = tx;
    svg.appendChild(t);
  };
  label(`${fmt(max)} ${unit}`, PAD.left - 4, y(max) + 4, "end");
  label("0", PAD.left - 4, y(0) + 4, "end");
  if (times.length > 1) {
    const span = Math.round(((times[times.length - 1] ?? 0) - (times[0] ?? 0)) / 60_000);
    label(`-${span} min`, PAD.left, H - 4, "start");
    label("now", W - PAD.right, H - 4, "end");
  }
  for (const s of series) {
    // A gap (null) splits the line instead of drawing it across missing data.
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) return void (pen = false);
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d !== "") svg.appendChild(el("path", { d, class: `line ${s.cls}` }));
    // A point with no neighbour draws no line: mark it, so one busy slice still shows.
    s.values.forEach((v, i) => {
      if (v !== null && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null)
        svg.appendChild(el("circle", { cx: x(i), cy: y(v), r: 2.5, class: `dot ${s.cls}` }));
    });
  }
  return svg;
}
