// Live account truth on the dashboard, one block per account: its stream (owner, connection,
// age of the last message and reconcile), its balance (the exchange's, or starting capital +
// realised where none was read) in its quote currency, equity, exposure per symbol with the
// age of the marks behind it; and the marks pushed live onto the open positions.

import { apiFetch } from "./api.js";
import { fmtAgo, fmtAmount, fmtPrice, fmtQty, fmtTime, h, initialState, signClass, splitSymbol } from "./format.js";
import { grossPnl } from "./positions.js";

const REFRESH_MS = 5000;
const refreshSeconds = new Map(); // account name → its markRefreshSeconds

/** Age every mark on the page once a second; flag it stale past three refresh intervals. */
function tickMarkAges(now = Date.now()) {
  for (const span of document.querySelectorAll('[data-role="mark-age"]')) {
    span.textContent = fmtAgo(span.dataset.at, now);
    const limit = 3 * (refreshSeconds.get(span.dataset.account) ?? 5);
    const stale = (now - new Date(span.dataset.at).getTime()) / 1000 > limit;
    span.parentElement?.classList.toggle("stale", stale);
  }
}

/**
 * Apply a ``positions.marked`` push ({account, account_name, at, marks: {symbol: price}})
 * to the positions map; returns how many positions moved.
 */
export function applyMarks(positions, payload) {
  let moved = 0;
  for (const [id, position] of positions) {
    const mark = payload.marks?.[position.symbol];
    if (mark === undefined || position.account !== payload.account_name) continue;
    positions.set(id, {
      ...position, mark_price: mark, mark_price_at: payload.at, mark_stale: false,
      unrealised_pnl: grossPnl(position, mark),
    });
    moved += 1;
  }
  return moved;
}

/** Apply a ``health.marked`` push (the price-driven danger recomputed on a fresh mark). */
export function applyHealthMarks(positions, payload) {
  let moved = 0;
  for (const entry of payload.positions || []) {
    const position = positions.get(entry.position_id);
    if (!position) continue;
    positions.set(entry.position_id, {
      ...position, health_score: entry.score, danger_level: entry.danger_level,
    });
    moved += 1;
  }
  return moved;
}

function streamLine(account) {
  const stream = account.stream;
  if (!stream) return h("span", { class: "faint" }, "no owner yet");
  const ok = stream.connected || stream.mode === "rest";
  return h("span", { class: ok ? "" : "neg", title: stream.last_error || "" },
    `${stream.mode || "starting"} · ${stream.connected ? "connected" : "not connected"}`,
    ` · msg ${fmtAgo(stream.last_message_at)} · reconcile ${fmtAgo(stream.last_reconcile_at)}`,
    ` · ${stream.reconnects} reconnects`,
    stream.owner_alive ? "" : " · owner gone: taking over");
}

function exposureRows(entry) {
  return entry.exposure.map((s) => h("tr", { class: s.mark_stale ? "stale" : "" },
    h("td", {}, splitSymbol(s.symbol).pair,
      h("span", { class: "sub" }, `${fmtQty(s.net_quantity)} net · ${s.positions} open`)),
    h("td", { class: "num", title: s.mark_stale ? "stale mark" : "" },
      fmtPrice(s.mark_price),
      h("span", { class: `sub${s.mark_stale ? " neg" : ""}` },
        s.mark_age_seconds === null ? "no mark" : `${Math.round(s.mark_age_seconds)}s old`)),
    h("td", { class: "num" }, fmtAmount(s.gross_notional, "", { signed: false }),
      h("span", { class: "sub" }, s.percent_of_equity === null ? "—" : `${s.percent_of_equity}% eq`))));
}

function accountBlock(account, entry) {
  const currency = entry?.currency ?? account.quote_currency;
  const open = entry ? entry.exposure.reduce((n, s) => n + s.positions, 0) : 0;
  return h("div", { class: "account", dataset: { account: account.name } },
    h("div", { class: "account-head" }, h("strong", {}, account.name),
      h("span", { class: "faint small" }, ` ${account.exchange_id}${account.testnet ? " testnet" : ""}`),
      h("span", { class: "grow" }), h("span", { class: "faint small" }, `${open} open`)),
    h("div", { class: "small" }, streamLine(account)),
    entry ? h("dl", { class: "kv tight" },
      h("dt", {}, "Balance", h("span", { class: "faint small block" }, entry.balance_source)),
      h("dd", { "data-role": "balance", title: entry.balance_at ? `read ${fmtTime(entry.balance_at)}` : "" },
        fmtAmount(entry.balance, currency, { signed: false })),
      h("dt", {}, "Unrealised"), h("dd", { class: signClass(entry.unrealised_pnl) }, fmtAmount(entry.unrealised_pnl, currency)),
      h("dt", {}, "Equity"), h("dd", {}, fmtAmount(entry.equity, currency, { signed: false })),
      h("dt", {}, "Exposure"), h("dd", { class: "stacked" }, fmtAmount(entry.gross_notional, currency, { signed: false }),
        h("span", { class: "faint small block" }, entry.percent_of_equity === null ? "" : `${entry.percent_of_equity}% of equity`)))
      : null,
    entry && entry.exposure.length ? h("table", { class: "data compact" },
      h("thead", {}, h("tr", {}, h("th", {}, "Symbol · net"), h("th", { class: "num" }, "Mark · age"),
        h("th", { class: "num" }, "Notional · % eq"))),
      h("tbody", {}, ...exposureRows(entry))) : null);
}

async function refresh(endpoints) {
  try {
    const [accounts, exposure] = await Promise.all([
      apiFetch(endpoints.live_accounts), apiFetch(endpoints.exposure)]);
    const byName = new Map(exposure.map((e) => [e.account, e]));
    const list = accounts.results.filter((a) => a.enabled);
    for (const a of list) refreshSeconds.set(a.name, a.sync.mark_refresh_seconds);
    document.getElementById("live-accounts-list").replaceChildren(
      ...list.map((a) => accountBlock(a, byName.get(a.name))));
    document.getElementById("live-accounts-empty").hidden = list.length > 0;
    document.getElementById("live-accounts-updated").textContent = fmtTime(new Date().toISOString());
  } catch (err) {
    document.getElementById("live-accounts-updated").textContent = `unavailable: ${err.message}`;
  }
}

let soon = null;
/** A position opened or closed, a trade closed: read the accounts again (once for a burst). */
export function reloadAccountsSoon(delayMs = 300) {
  const { endpoints } = initialState();
  if (!document.getElementById("live-accounts-panel")) return;
  clearTimeout(soon);
  soon = setTimeout(() => refresh(endpoints), delayMs);
}

export function startAccounts() {
  const { endpoints } = initialState();
  if (!document.getElementById("live-accounts-panel")) return;
  refresh(endpoints);
  setInterval(() => refresh(endpoints), REFRESH_MS);
  setInterval(tickMarkAges, 1000);
}
