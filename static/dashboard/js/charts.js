// Time-series line charts drawn as inline SVG (no chart library, nothing fetched).

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { top: 10, right: 14, bottom: 22, left: 62 };

export function s(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/** Round tick step: 1, 2 or 5 times a power of ten. */
function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

export function yTicks(min, max, count = 4) {
  const step = niceStep(max - min, count);
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}

export function timeLabel(ms, span) {
  const d = new Date(ms);
  if (span <= 2 * 86400e3) {
    return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  }
  return d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" });
}

/**
 * Draw series = [{name, points: [{x: ms, y: number}], cls, area, step, extendTo}] into container.
 * A ``step`` series holds each value until the next point (equity after each trade) and,
 * with ``extendTo`` (ms), until then; a single point is drawn as a dot.
 * opts: yFormat(v), yMin, yMax, lines: [{y, cls}] (thresholds), bands: [{from, to, cls}]
 * (shaded value ranges), empty: text.
 * Redraws itself when the container is resized; returns {update(series)}.
 */
export function lineChart(container, series, opts = {}) {
  let current = series;
  const draw = () => render(container, current, opts);
  const observer = new ResizeObserver(() => draw());
  observer.observe(container);
  draw();
  return {
    update(next, nextOpts) { current = next; if (nextOpts) opts = nextOpts; draw(); },
  };
}

function render(container, series, opts) {
  container.replaceChildren();
  const all = series.flatMap((one) => one.points);
  if (all.length < 1) {
    const empty = document.createElement("div");
    empty.className = "chart-empty";
    empty.textContent = opts.empty || "Not enough data for a chart yet.";
    container.append(empty);
    return;
  }
  const width = container.clientWidth || 600;
  const height = container.clientHeight || 220;
  const innerW = width - MARGIN.left - MARGIN.right;
  const innerH = height - MARGIN.top - MARGIN.bottom;
  const xs = all.map((p) => p.x).concat(series.map((one) => one.extendTo).filter((x) => x));
  const ys = all.map((p) => p.y).concat((opts.lines || []).map((l) => l.y));
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 === x0) { x0 -= 1800e3; x1 += 1800e3; } // one moment: half an hour either side
  let y0 = opts.yMin ?? Math.min(...ys);
  let y1 = opts.yMax ?? Math.max(...ys);
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  if (opts.yMin === undefined || opts.yMax === undefined) {
    const pad = (y1 - y0) * 0.08;
    if (opts.yMin === undefined) y0 -= pad;
    if (opts.yMax === undefined) y1 += pad;
  }
  const X = (v) => MARGIN.left + ((v - x0) / (x1 - x0)) * innerW;
  const Y = (v) => MARGIN.top + (1 - (v - y0) / (y1 - y0)) * innerH;
  const yFormat = opts.yFormat || ((v) => v.toLocaleString("en-US"));

  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                         "aria-label": opts.label || "chart" });
  for (const band of opts.bands || []) {
    const top = Y(Math.min(band.to, y1));
    svg.append(s("rect", { class: band.cls, x: MARGIN.left, width: innerW, y: top,
                           height: Math.max(0, Y(Math.max(band.from, y0)) - top) }));
  }
  for (const t of yTicks(y0, y1, Math.max(3, Math.floor(innerH / 45)))) {
    svg.append(s("line", { class: "grid-line", x1: MARGIN.left, x2: width - MARGIN.right, y1: Y(t), y2: Y(t) }));
    const label = s("text", { class: "axis-label", x: MARGIN.left - 8, y: Y(t) + 3, "text-anchor": "end" });
    label.textContent = yFormat(t);
    svg.append(label);
  }
  const ticks = Math.max(2, Math.min(7, Math.floor(innerW / 110)));
  for (let i = 0; i <= ticks; i += 1) {
    const v = x0 + ((x1 - x0) * i) / ticks;
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    const label = s("text", { class: "axis-label", x: X(v), y: height - 6, "text-anchor": anchor });
    label.textContent = timeLabel(v, x1 - x0);
    svg.append(label);
  }
  for (const line of opts.lines || []) {
    svg.append(s("line", { class: line.cls, x1: MARGIN.left, x2: width - MARGIN.right, y1: Y(line.y), y2: Y(line.y) }));
  }
  for (const one of series) {
    if (!one.points.length) continue;
    const d = linePath(one, X, Y);
    if (one.area) {
      const bottom = Y(Math.max(y0, Math.min(y1, opts.areaBase ?? y0)));
      const first = one.points[0];
      const lastX = one.step && one.extendTo ? one.extendTo : one.points[one.points.length - 1].x;
      svg.append(s("path", { class: "area", d: `${d}L${X(lastX).toFixed(1)},${bottom}L${X(first.x).toFixed(1)},${bottom}Z` }));
    }
    svg.append(s("path", { class: one.cls || "line", d }));
    if (one.points.length === 1) {
      const [p] = one.points;
      svg.append(s("circle", { class: `point ${one.cls || "line"}`, r: 3.5, cx: X(p.x), cy: Y(p.y) }));
    }
  }
  container.append(svg);
  addHover(container, svg, series, { X, Y, yFormat, top: MARGIN.top, bottom: height - MARGIN.bottom, opts });
}

/** The SVG path of a series: straight segments, or steps that hold each value. */
export function linePath(one, X, Y) {
  const at = (p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`;
  if (!one.step) return one.points.map((p, i) => `${i ? "L" : "M"}${at(p)}`).join("");
  let d = `M${at(one.points[0])}`;
  for (const p of one.points.slice(1)) d += `H${X(p.x).toFixed(1)}V${Y(p.y).toFixed(1)}`;
  const last = one.points[one.points.length - 1];
  if (one.extendTo && one.extendTo > last.x) d += `H${X(one.extendTo).toFixed(1)}`;
  return d;
}

function addHover(container, svg, series, { X, Y, yFormat, top, bottom, opts }) {
  const main = series[0];
  if (!main || !main.points.length) return;
  const cursor = s("line", { class: "cursor", y1: top, y2: bottom, visibility: "hidden" });
  const dot = s("circle", { class: "dot", r: 3.5, visibility: "hidden" });
  svg.append(cursor, dot);
  const tip = document.createElement("div");
  tip.className = "tip";
  tip.hidden = true;
  container.append(tip);
  svg.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const scale = box.width / svg.viewBox.baseVal.width;
    const mx = (ev.clientX - box.left) / scale;
    let best = main.points[0];
    for (const p of main.points) if (Math.abs(X(p.x) - mx) < Math.abs(X(best.x) - mx)) best = p;
    cursor.setAttribute("x1", X(best.x)); cursor.setAttribute("x2", X(best.x));
    dot.setAttribute("cx", X(best.x)); dot.setAttribute("cy", Y(best.y));
    cursor.setAttribute("visibility", "visible"); dot.setAttribute("visibility", "visible");
    const when = new Date(best.x).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
    tip.textContent = `${when} · ${opts.tipLabel ? opts.tipLabel(best) : yFormat(best.y)}`;
    tip.style.left = `${X(best.x) * scale}px`;
    tip.style.top = `${Y(best.y) * scale}px`;
    tip.hidden = false;
  });
  svg.addEventListener("mouseleave", () => {
    cursor.setAttribute("visibility", "hidden"); dot.setAttribute("visibility", "hidden");
    tip.hidden = true;
  });
}
