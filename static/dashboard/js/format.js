// Number, time and DOM helpers shared by the dashboard pages. No dependencies.

const NBSP = "\u00a0";

/** Create an element: h("td", {class: "num", title: "x"}, "text", childNode). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function toNumber(value) {
  if (value === null || value === undefined || value === "") return null;
  const n = typeof value === "number" ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

/** Prices: enough decimals to be meaningful at the price's magnitude. */
export function fmtPrice(value) {
  const n = toNumber(value);
  if (n === null) return "—";
  const abs = Math.abs(n);
  const digits = abs >= 1000 ? 2 : abs >= 1 ? 4 : abs >= 0.01 ? 6 : 8;
  return n.toLocaleString("en-US", { minimumFractionDigits: Math.min(digits, 2), maximumFractionDigits: digits });
}

/** Quantities: trailing zeros dropped. */
export function fmtQty(value) {
  const n = toNumber(value);
  if (n === null) return "—";
  return n.toLocaleString("en-US", { maximumFractionDigits: 8 });
}

/** Money with sign: +1,234.56 / −12.00. */
export function fmtMoney(value, { signed = true, digits = 2 } = {}) {
  const n = toNumber(value);
  if (n === null) return "—";
  const text = Math.abs(n).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  if (!signed) return (n < 0 ? "−" : "") + text;
  return (n > 0 ? "+" : n < 0 ? "−" : "") + text;
}

export function fmtPct(value, { digits = 2, signed = false, ratio = false } = {}) {
  let n = toNumber(value);
  if (n === null) return "—";
  if (ratio) n *= 100;
  const text = Math.abs(n).toFixed(digits);
  const sign = n < 0 ? "−" : signed && n > 0 ? "+" : "";
  return `${sign}${text}${NBSP}%`;
}

export function fmtRatio(value, digits = 2) {
  const n = toNumber(value);
  if (n === null) return "—";
  return (n < 0 ? "−" : "") + Math.abs(n).toFixed(digits);
}

export function signClass(value) {
  const n = toNumber(value);
  if (n === null || n === 0) return "";
  return n > 0 ? "pos" : "neg";
}

/** Durations: 45s, 12m 05s, 3h 07m, 2d 04h. */
export function fmtDuration(seconds) {
  const n = toNumber(seconds);
  if (n === null) return "—";
  let s = Math.max(0, Math.floor(Math.abs(n)));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  const pad = (x) => String(x).padStart(2, "0");
  if (d) return `${d}d ${pad(hh)}h`;
  if (hh) return `${hh}h ${pad(mm)}m`;
  if (mm) return `${mm}m ${pad(s)}s`;
  return `${s}s`;
}

/** Seconds until a deadline, as "1h 12m" or "overdue 4m 10s". */
export function fmtCountdown(seconds) {
  const n = toNumber(seconds);
  if (n === null) return "—";
  return n < 0 ? `overdue ${fmtDuration(-n)}` : fmtDuration(n);
}

const pad2 = (n) => String(n).padStart(2, "0");

/** 09:12:05 in the browser's time zone. */
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** 2026-11-25 09:12 in the browser's time zone (unambiguous, sorts as text). */
export function fmtDateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** "BTC/USDT:USDT" → {pair: "BTC/USDT", kind: "perp"}; spot symbols have no kind. */
export function splitSymbol(symbol) {
  const [pair, settle] = String(symbol).split(":");
  return { pair, kind: settle ? "perp" : "", quote: (pair.split("/")[1] || "") };
}

/** "12s ago", "5m ago", "3h ago", else the date. */
export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return fmtDateTime(iso);
}

/** Read the JSON that the server embedded with Django's json_script. */
export function initialState() {
  return JSON.parse(document.getElementById("initial-state").textContent);
}

/** Money with its currency: "+1,234.56 USDT" (the currency left out when unknown). */
export function fmtAmount(value, currency, { signed = true, digits = 2 } = {}) {
  const text = fmtMoney(value, { signed, digits });
  return text === "—" || !currency ? text : `${text}${NBSP}${currency}`;
}

/** A PnL with its percentage: "+22.21 USDT (+0.71 %)". */
export function fmtProfit(pnl, percent, currency) {
  const money = fmtAmount(pnl, currency);
  const pct = toNumber(percent);
  return pct === null ? money : `${money} (${fmtPct(pct, { signed: true })})`;
}

/** A span that says how long ago ``iso`` was and keeps saying it (see ``tickAgo``). */
export function agoNode(iso, { prefix = "", cls = "" } = {}) {
  const node = document.createElement("span");
  if (cls) node.className = cls;
  if (!iso) { node.textContent = "—"; return node; }
  node.dataset.ago = iso;
  node.dataset.agoPrefix = prefix;
  node.title = fmtDateTime(iso);
  node.textContent = `${prefix}${fmtAgo(iso)}`;
  return node;
}

/** Re-render every relative time under ``root`` (called once a second). */
export function tickAgo(root = document, now = Date.now()) {
  for (const node of root.querySelectorAll("[data-ago]")) {
    node.textContent = `${node.dataset.agoPrefix || ""}${fmtAgo(node.dataset.ago, now)}`;
  }
}
