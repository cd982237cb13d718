// Rendering of position rows and health cells, shared by the dashboard and the position page.
// A row is rendered from the API's position JSON; live 'health.updated' entries are merged in.

import {
  fmtAgo, fmtCountdown, fmtDuration, fmtMoney, fmtPct, fmtPrice, fmtQty, h, signClass, splitSymbol, toNumber,
} from "./format.js";

export const COMPONENTS = [
  ["time_at_risk", "Time at risk"],
  ["drawdown", "Drawdown"],
  ["volume", "Volume"],
  ["volatility", "Volatility"],
  ["profitability", "Profitability"],
];

/** Gross unrealised PnL at ``mark`` (before fees), as the API's ``unrealised_pnl``. */
export function grossPnl(position, mark) {
  const price = toNumber(mark);
  if (price === null) return null;
  const direction = position.side === "short" ? -1 : 1;
  return (price - toNumber(position.entry_price)) * toNumber(position.quantity) * direction;
}

/** Gross unrealised PnL as % of the entry notional, as the API's ``unrealised_pnl_percent``. */
export function grossPnlPercent(position, mark) {
  const price = toNumber(mark);
  const entry = toNumber(position.entry_price);
  if (price === null || !entry) return null;
  return ((price - entry) / entry) * 100 * (position.side === "short" ? -1 : 1);
}

/**
 * Merge a live health entry ({id, score, components, danger_level, state, last_price, ...})
 * into a position. The countdown keeps the deadline the API gave (``timeout_due_at``): it
 * follows from the open time and the strategy's limit, not from the push. The PnL shown stays the API's gross figure, recomputed at the new mark
 * (the risk push's own PnL deducts assumed fees).
 */
export function mergeHealth(position, update) {
  const merged = { ...position };
  if (update.state) merged.state = update.state;
  if (update.score !== undefined) merged.health_score = update.score;
  // The one danger level (health and state together) comes computed from the server.
  if (update.danger_level !== undefined) merged.danger_level = update.danger_level;
  if (update.health_danger_level !== undefined) merged.health_danger_level = update.health_danger_level;
  if (update.last_price !== undefined && update.last_price !== null) {
    merged.mark_price = update.last_price;
    merged.unrealised_pnl = grossPnl(position, update.last_price);
    merged.unrealised_pnl_percent = grossPnlPercent(position, update.last_price);
  }
  if (update.checked_at) merged.health_checked_at = update.checked_at;
  if (update.components || update.score !== undefined) {
    merged.health = {
      ...(position.health || {}),
      score: update.score ?? position.health?.score,
      components: update.components ?? position.health?.components,
      danger_level: update.danger_level ?? position.health?.danger_level,
      data_complete: update.data_complete ?? position.health?.data_complete ?? true,
      missing: update.missing ?? position.health?.missing ?? [],
      taken_at: update.checked_at ?? new Date().toISOString(),
    };
  }
  return merged;
}

/**
 * The health score coloured by the one danger level (the server's ``danger_level``: health and
 * lifecycle state together). A closed position shows its last score greyed, with no level.
 */
export function scoreCell(position) {
  const score = toNumber(position.health_score ?? position.health?.score);
  if (score === null) return h("span", { class: "score none", title: "Not scored yet", "data-role": "score" }, "—");
  if (position.state === "CLOSED") {
    return h("span", { class: "score none", title: "Last score before the close", "data-role": "score" }, score.toFixed(1));
  }
  const level = position.danger_level || "";
  const healthLevel = position.health_danger_level ?? position.health?.danger_level ?? "";
  const incomplete = position.health && position.health.data_complete === false;
  const why = healthLevel && healthLevel !== level ? ` (health alone ${healthLevel}, state ${position.state})` : "";
  return h("span", {
    class: `score ${level}${incomplete ? " incomplete" : ""}`,
    title: `${level || "unrated"}${why}${incomplete ? " · scored with missing market data" : ""}`,
    "data-role": "score", "data-level": level,
  }, score.toFixed(1));
}

function barLevel(value) {
  return value < 30 ? "low" : value < 60 ? "mid" : "";
}

export function componentBars(components) {
  if (!components) return h("span", { class: "faint" }, "—");
  return h("span", { class: "bars", "data-role": "components" },
    COMPONENTS.map(([key, label]) => {
      const value = toNumber(components[key]);
      const pct = value === null ? 0 : Math.max(0, Math.min(100, value));
      return h("span", {
        class: `bar ${value === null ? "" : barLevel(value)}`,
        title: `${label}: ${value === null ? "—" : value.toFixed(1)}`,
        "data-component": key,
        "data-value": value === null ? "" : value.toFixed(2),
      }, h("i", { style: `height:${pct}%` }));
    }));
}

/** The five components as labelled horizontal bars with their values (position page). */
export function componentBreakdown(health) {
  if (!health) return h("div", { class: "faint" }, "Not scored yet.");
  const rows = COMPONENTS.map(([key, label]) => {
    const value = toNumber(health.components?.[key]);
    const pct = value === null ? 0 : Math.max(0, Math.min(100, value));
    return h("div", { class: "hbar-row", dataset: { component: key } },
      h("span", { class: "hbar-label" }, label),
      h("span", { class: `hbar ${value === null ? "" : barLevel(value)}` }, h("i", { style: `width:${pct}%` })),
      h("span", { class: "hbar-value num" }, value === null ? "—" : value.toFixed(1)));
  });
  const missing = health.data_complete === false
    ? h("div", { class: "faint small" }, `* scored with missing market data${health.missing?.length ? `: ${health.missing.join(", ")}` : ""}`)
    : null;
  return h("div", {}, ...rows, missing);
}

export function countdownSeconds(position, now = Date.now()) {
  return position.timeout_due_at ? (new Date(position.timeout_due_at).getTime() - now) / 1000 : null;
}

export function countdownClass(seconds) {
  if (seconds === null) return "";
  if (seconds < 0) return "over";
  return seconds < 30 * 60 ? "soon" : "";
}

export function ageSeconds(position, now = Date.now()) {
  return (now - new Date(position.opened_at).getTime()) / 1000;
}

/** The PnL cell's content: amount, currency and percentage (the API's gross figures). */
export function pnlContent(pnl, percent, currency) {
  return [
    h("span", { "data-role": "upnl" }, fmtMoney(pnl)),
    currency && toNumber(pnl) !== null ? h("span", { class: "unit" }, currency) : null,
    h("span", { class: `pct ${signClass(percent)}`, "data-role": "upnl-pct" },
      toNumber(percent) === null ? "" : fmtPct(percent, { signed: true })),
  ];
}

/** One <tr> of the open-positions table (a card on a phone: see dashboard.css). */
export function positionRow(position, { staff = false, onClose = null, currency = "" } = {}) {
  const upnl = position.unrealised_pnl;
  const secs = countdownSeconds(position);
  const { pair, kind, quote } = splitSymbol(position.symbol);
  const unit = position.quote_currency || currency || quote;
  const row = h("tr", {
    class: position.danger_level ? `danger-${position.danger_level}` : "",
    dataset: { positionId: String(position.id) },
  },
  h("td", { class: "sym", title: `${position.symbol}${kind ? ` (${kind})` : ""}` },
    h("a", { href: `/positions/${position.id}/` }, pair),
    h("span", { class: "sub" },
      h("span", { class: `side-${position.side}` }, position.side.toUpperCase()),
      ` · #${position.id} · ${position.strategy}`)),
  h("td", { class: "num hide-phone", "data-label": "Size" }, fmtQty(position.quantity)),
  h("td", { class: "num hide-phone", "data-label": "Entry" }, fmtPrice(position.entry_price)),
  h("td", { class: `num${position.mark_stale ? " stale" : ""}`, "data-role": "mark", "data-label": "Mark",
            title: position.mark_price_at ? `mark read ${fmtAgo(position.mark_price_at)}${position.mark_stale ? " (stale)" : ""}` : "no mark yet" },
    fmtPrice(position.mark_price),
    position.mark_price_at ? h("span", {
      class: "sub", "data-role": "mark-age",
      dataset: { at: position.mark_price_at, account: position.account || "" },
    }, fmtAgo(position.mark_price_at)) : null),
  h("td", { class: `num pnl ${signClass(upnl)}`, "data-label": "uPnL",
            title: `gross at the mark price, before fees${unit ? ` (${unit})` : ""}` },
    ...pnlContent(upnl, position.unrealised_pnl_percent, unit)),
  h("td", { "data-role": "state", "data-label": "State" }, h("span", { class: `badge ${position.state}` }, position.state)),
  h("td", { class: "num hide-phone", "data-role": "age", "data-label": "Age" }, fmtDuration(ageSeconds(position))),
  h("td", { class: `num countdown ${countdownClass(secs)}`, "data-role": "countdown", "data-label": "Timeout in",
            title: position.timeout_due_at ? `times out at ${new Date(position.timeout_due_at).toLocaleString("en-GB")}` : null },
    position.state === "CLOSING" ? "closing" : fmtCountdown(secs)),
  h("td", { class: "health", "data-label": "Health" }, scoreCell(position), " ", componentBars(position.health?.components)),
  staff ? h("td", { class: "num action" },
    position.state === "CLOSING"
      ? h("span", { class: "faint" }, "closing…")
      : h("button", { class: "btn small ghost-danger", type: "button", onclick: () => onClose && onClose(position) },
        "Close")) : null);
  return row;
}

/** Refresh the age and countdown cells of every row once a second. */
export function tickClocks(rows, positionsById) {
  const now = Date.now();
  for (const row of rows) {
    const position = positionsById.get(Number(row.dataset.positionId));
    if (!position) continue;
    const age = row.querySelector('[data-role="age"]');
    if (age) age.textContent = fmtDuration(ageSeconds(position, now));
    const cd = row.querySelector('[data-role="countdown"]');
    if (cd && position.state !== "CLOSING") {
      const secs = countdownSeconds(position, now);
      cd.textContent = fmtCountdown(secs);
      cd.className = `num countdown ${countdownClass(secs)}`;
    }
  }
}
