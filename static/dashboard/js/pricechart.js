// The price chart of a position: its market's candles as inline SVG, with the entry and exit,
// the warning and timeout times and the mark price. No chart library, nothing fetched here.

import { s, timeLabel, yTicks } from "./charts.js";

const MARGIN = { top: 14, right: 64, bottom: 22, left: 64 };

const num = (v) => (v === null || v === undefined || v === "" ? null : Number(v));

/**
 * candles: [{time, open, high, low, close}] (ISO time, numbers or decimal strings), oldest first.
 * marks: {entry: {time, price}, exit: {time, price} | null, warningAt, timeoutAt, mark,
 *         timeframeSeconds, priceFormat(v)}.
 * Redraws on resize; returns {update(candles, marks)}.
 */
export function priceChart(container, candles, marks) {
  let current = { candles, marks };
  const draw = () => render(container, current.candles, current.marks);
  new ResizeObserver(draw).observe(container);
  draw();
  return { update(nextCandles, nextMarks) { current = { candles: nextCandles, marks: nextMarks }; draw(); } };
}

function render(container, rawCandles, marks) {
  container.replaceChildren();
  const candles = rawCandles.map((c) => ({
    x: new Date(c.time).getTime(), open: num(c.open), high: num(c.high), low: num(c.low), close: num(c.close),
  })).filter((c) => [c.open, c.high, c.low, c.close].every((v) => v !== null && Number.isFinite(v)));
  if (!candles.length) {
    const empty = document.createElement("div");
    empty.className = "chart-empty";
    empty.textContent = marks.empty || "No candles recorded for this market yet.";
    container.append(empty);
    return;
  }
  const step = (marks.timeframeSeconds || 300) * 1000;
  const times = (t) => (t ? new Date(t).getTime() : null);
  const entryAt = times(marks.entry?.time);
  const exitAt = times(marks.exit?.time);
  const warningAt = times(marks.warningAt);
  const timeoutAt = times(marks.timeoutAt);
  const xsAll = candles.map((c) => c.x).concat([candles[candles.length - 1].x + step, entryAt, exitAt,
    warningAt, timeoutAt].filter((v) => v !== null));
  const x0 = Math.min(...xsAll);
  const x1 = Math.max(...xsAll) === x0 ? x0 + step : Math.max(...xsAll);
  const prices = candles.flatMap((c) => [c.high, c.low])
    .concat([num(marks.entry?.price), num(marks.exit?.price), num(marks.mark)].filter((v) => v !== null));
  let y0 = Math.min(...prices);
  let y1 = Math.max(...prices);
  if (y1 === y0) { y0 *= 0.999; y1 *= 1.001; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;

  const width = container.clientWidth || 600;
  const height = container.clientHeight || 260;
  const innerW = width - MARGIN.left - MARGIN.right;
  const innerH = height - MARGIN.top - MARGIN.bottom;
  const X = (v) => MARGIN.left + ((v - x0) / (x1 - x0)) * innerW;
  const Y = (v) => MARGIN.top + (1 - (v - y0) / (y1 - y0)) * innerH;
  const fmt = marks.priceFormat || ((v) => v.toLocaleString("en-US", { maximumSignificantDigits: 6 }));

  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Price chart" });
  for (const t of yTicks(y0, y1, Math.max(3, Math.floor(innerH / 45)))) {
    svg.append(s("line", { class: "grid-line", x1: MARGIN.left, x2: width - MARGIN.right, y1: Y(t), y2: Y(t) }));
    const label = s("text", { class: "axis-label", x: MARGIN.left - 8, y: Y(t) + 3, "text-anchor": "end" });
    label.textContent = fmt(t);
    svg.append(label);
  }
  const ticks = Math.max(2, Math.min(7, Math.floor(innerW / 110)));
  for (let i = 0; i <= ticks; i += 1) {
    const v = x0 + ((x1 - x0) * i) / ticks;
    const label = s("text", { class: "axis-label", x: X(v), y: height - 6,
                              "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" });
    label.textContent = timeLabel(v, x1 - x0);
    svg.append(label);
  }

  const body = Math.max(1, Math.min(12, (innerW / ((x1 - x0) / step)) * 0.7));
  for (const c of candles) {
    const cx = X(c.x + step / 2);
    const up = c.close >= c.open;
    const g = s("g", { class: `candle ${up ? "up" : "down"}` });
    g.append(s("line", { x1: cx, x2: cx, y1: Y(c.high), y2: Y(c.low) }));
    const top = Y(Math.max(c.open, c.close));
    g.append(s("rect", { x: cx - body / 2, width: body, y: top, height: Math.max(1, Y(Math.min(c.open, c.close)) - top) }));
    svg.append(g);
  }

  const vline = (at, cls, text, top) => {
    if (at === null) return;
    svg.append(s("line", { class: cls, x1: X(at), x2: X(at), y1: MARGIN.top, y2: height - MARGIN.bottom }));
    // The warning's label at the top, the timeout's at the bottom: close together they never collide.
    const label = s("text", { class: `marker-label ${cls}`, x: X(at) - 3,
                              y: top ? MARGIN.top + 8 : height - MARGIN.bottom - 4, "text-anchor": "end" });
    label.textContent = text;
    svg.append(label);
  };
  const hline = (price, cls, text) => {
    if (price === null) return;
    svg.append(s("line", { class: cls, x1: MARGIN.left, x2: width - MARGIN.right, y1: Y(price), y2: Y(price) }));
    const label = s("text", { class: `marker-label ${cls}`, x: width - MARGIN.right + 4, y: Y(price) + 3 });
    label.textContent = `${text} ${fmt(price)}`;
    svg.append(label);
  };
  vline(warningAt, "mark-warning", "warning", true);
  vline(timeoutAt, "mark-timeout", "timeout", false);
  hline(num(marks.entry?.price), "mark-entry", "entry");
  if (marks.exit) hline(num(marks.exit.price), "mark-exit", "exit");
  else hline(num(marks.mark), "mark-price", "mark");
  const point = (at, price, cls, label) => {
    if (at === null || price === null) return;
    const dot = s("circle", { class: `marker ${cls}`, cx: X(at), cy: Y(price), r: 4.5 });
    const title = s("title");
    title.textContent = `${label} ${fmt(price)} · ${new Date(at).toLocaleString("en-GB")}`;
    dot.append(title);
    svg.append(dot);
  };
  point(entryAt, num(marks.entry?.price), "mark-entry", "entry");
  if (marks.exit) point(exitAt, num(marks.exit.price), "mark-exit", "exit");
  container.append(svg);
}
