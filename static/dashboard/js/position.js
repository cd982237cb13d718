// The position page: facts (the realised result once closed), the price chart with entry, exit,
// warning and timeout, the health history, events, orders and actions; the live channel keeps
// them current and the page says when it is stale.

import { apiFetch, toast } from "./api.js";
import { lineChart } from "./charts.js";
import {
  agoNode, fmtCountdown, fmtDateTime, fmtDuration, fmtPct, fmtPrice, fmtProfit, fmtQty, h, initialState,
  signClass, splitSymbol, toNumber,
} from "./format.js";
import { Freshness } from "./freshness.js";
import { bindHaltControls, renderHalt } from "./halt.js";
import { bindLiveStatus, LiveChannel } from "./live.js";
import { ageSeconds, componentBreakdown, countdownSeconds, mergeHealth, scoreCell } from "./positions.js";
import { priceChart } from "./pricechart.js";

const state = initialState();
let position = state.position;
const history = state.health_history.map(toPoint);
const $ = (id) => document.getElementById(id);
// The strategy's danger thresholds (riskMonitoring.warningScoreThreshold / healthScoreThreshold).
const WARNING_SCORE = state.thresholds.warning;
const CRITICAL_SCORE = state.thresholds.critical;

function toPoint(snapshot) {
  return { x: new Date(snapshot.taken_at).getTime(), y: toNumber(snapshot.score), snapshot };
}

function fact(label, value, cls = "") {
  return h("div", { class: "fact" }, h("div", { class: "label" }, label), h("div", { class: `value ${cls}` }, value));
}

function renderFacts() {
  const closed = position.state === "CLOSED";
  const trade = position.trade;
  const unit = position.quote_currency || splitSymbol(position.symbol).quote;
  $("pos-state").replaceChildren(h("span", { class: `badge ${position.state}` }, position.state));
  $("pos-score").replaceChildren(scoreCell(position));
  const secs = countdownSeconds(position);
  const facts = [
    fact("Strategy", position.strategy),
    fact("Size", fmtQty(closed && trade ? trade.quantity : position.quantity)),
    fact("Entry", fmtPrice(position.entry_price)),
  ];
  if (closed) {
    facts.push(
      fact("Exit price", trade ? fmtPrice(trade.exit_price) : "—"),
      fact("Realised PnL", trade ? fmtProfit(trade.pnl, trade.pnl_percent, unit) : "—",
        trade ? signClass(trade.pnl) : ""),
      fact("Exit reason", trade?.exit_reason || position.close_reason || "—"),
      fact("Opened", fmtDateTime(position.opened_at)),
      fact("Closed", fmtDateTime(position.closed_at)),
      fact("Held for", fmtDuration(trade ? trade.holding_seconds
        : (new Date(position.closed_at) - new Date(position.opened_at)) / 1000)),
      fact("Fees", trade ? fmtProfit(-toNumber(trade.fees), null, unit) : "—"),
      fact("Danger level", "— (closed)"),
      fact("Account", position.account));
  } else {
    facts.push(
      fact("Mark", fmtPrice(position.mark_price)),
      fact("Unrealised PnL", fmtProfit(position.unrealised_pnl, position.unrealised_pnl_percent, unit),
        signClass(position.unrealised_pnl)),
      fact("Danger level", position.danger_level || "unscored"),
      fact("Opened", fmtDateTime(position.opened_at)),
      fact("Age", fmtDuration(ageSeconds(position))),
      fact("Timeout in", fmtCountdown(secs), secs !== null && secs < 0 ? "neg" : ""),
      fact("Health checked", position.health_checked_at ? agoNode(position.health_checked_at) : "never"),
      fact("Close reason", position.close_reason || "—"),
      fact("Account", position.account));
  }
  $("pos-facts").replaceChildren(...facts);
  const closeButton = $("close-button");
  if (closeButton) closeButton.hidden = position.state === "CLOSING" || closed;
  $("components").replaceChildren(componentBreakdown(position.health));
  $("components-when").textContent = position.health?.taken_at ? fmtDateTime(position.health.taken_at) : "";
}

function priceMarks() {
  const trade = position.trade;
  const closed = position.state === "CLOSED";
  return {
    entry: { time: position.opened_at, price: position.entry_price },
    exit: closed && trade ? { time: trade.closed_at, price: trade.exit_price } : null,
    warningAt: position.warning_due_at,
    timeoutAt: position.timeout_due_at,
    mark: position.mark_price,
    timeframeSeconds: TIMEFRAME_SECONDS[candles.timeframe] || 300,
    priceFormat: (v) => fmtPrice(v),
    empty: `No ${candles.timeframe} candles recorded for ${position.symbol} yet.`,
  };
}

const TIMEFRAME_SECONDS = { "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
  "2h": 7200, "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400 };

function healthCount() {
  $("health-count").textContent = history.length ? `${history.length} check${history.length === 1 ? "" : "s"}` : "";
}

function renderChart() {
  healthCount();
  return lineChart($("health-chart"), [{ name: "score", points: history }], {
    label: "Health score history", yMin: 0, yMax: 100, empty: "No health checks yet.",
    yFormat: (v) => v.toFixed(0),
    lines: [{ y: WARNING_SCORE, cls: "threshold-warn" }, { y: CRITICAL_SCORE, cls: "threshold-crit" }],
    bands: [{ from: CRITICAL_SCORE, to: WARNING_SCORE, cls: "band-warn" }, { from: 0, to: CRITICAL_SCORE, cls: "band-crit" }],
    tipLabel: (p) => `score ${p.y.toFixed(1)} · ${p.snapshot.danger_level}`,
  });
}

function renderEvents() {
  const events = position.events || [];
  $("events-count").textContent = `(${events.length})`;
  $("events-table").querySelector("tbody").replaceChildren(...events.slice().reverse().map((e) => h("tr", {},
    h("td", { class: "nowrap muted", "data-label": "Time" }, fmtDateTime(e.created_at)),
    h("td", { "data-label": "Event" }, e.kind.replaceAll("_", " ")),
    h("td", { class: "nowrap", "data-label": "Transition" }, e.from_state || e.to_state ? `${e.from_state || "·"} → ${e.to_state || "·"}` : "—"),
    h("td", { "data-label": "Reason" }, e.reason || "—"),
    h("td", { class: "muted", "data-label": "By" }, e.actor))));
}

function renderOrders() {
  const body = $("orders-table").querySelector("tbody");
  $("orders-count").textContent = `(${state.orders.length})`;
  if (!state.orders.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 11, class: "faint" }, "No orders for this position.")));
    return;
  }
  body.replaceChildren(...state.orders.map((o) => h("tr", {},
    h("td", { class: "nowrap muted", "data-label": "Created" }, fmtDateTime(o.created_at)),
    h("td", { class: "mono", "data-label": "Client id", title: o.exchange_order_id ? `exchange id ${o.exchange_order_id}` : null }, o.client_order_id),
    h("td", { "data-label": "Side" }, h("span", { class: `badge side-${o.side === "buy" ? "long" : "short"}` }, o.side.toUpperCase())),
    h("td", { "data-label": "Purpose" }, o.purpose.replaceAll("_", " ")),
    h("td", { class: "num", "data-label": "Qty" }, fmtQty(o.quantity)),
    h("td", { class: "num", "data-label": "Filled" }, fmtQty(o.filled_quantity)),
    h("td", { class: "num", "data-label": "Avg price" }, fmtPrice(o.average_fill_price)),
    h("td", { class: "num", "data-label": "Slippage" }, fmtPct(o.slippage_percent, { digits: 3 })),
    h("td", { class: "num", "data-label": "Tries" }, String(o.attempts)),
    h("td", { "data-label": "Status", title: o.last_error || null }, h("span", { class: `badge ${o.status}` }, o.status.replaceAll("_", " "))),
    state.user.is_staff ? h("td", { class: "num action" }, FINAL_ORDER_STATUSES.has(o.status) ? null
      : h("button", { class: "btn small ghost-danger", type: "button", "data-role": "cancel-order",
                      onclick: (ev) => cancelOrder(o, ev.currentTarget) }, "Cancel")) : null)));
}

const FINAL_ORDER_STATUSES = new Set(state.final_order_statuses);

async function cancelOrder(order, button) {
  if (!window.confirm(`Cancel order ${order.client_order_id} (${order.side} ${fmtQty(order.quantity)} ${order.symbol})?`)) return;
  button.disabled = true;
  try {
    // The cancel is an action: queued at once, sent and verified by the workers.
    const action = await apiFetch(state.endpoints.cancel_order.replace("{id}", order.id), { method: "POST" });
    state.actions = [action, ...state.actions.filter((a) => a.id !== action.id)];
    renderActions();
    toast(`Cancel of ${order.client_order_id} queued (action #${action.id}).`);
  } catch (err) {
    button.disabled = false;
    toast(`Cancel refused: ${err.message}`, { error: true });
  }
}

function renderActions() {
  const body = $("actions-table").querySelector("tbody");
  $("actions-count").textContent = `(${state.actions.length})`;
  if (!state.actions.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "faint" }, "No actions requested.")));
    return;
  }
  body.replaceChildren(...state.actions.map((a) => h("tr", {},
    h("td", { class: "nowrap muted", "data-label": "Requested" }, fmtDateTime(a.created_at)),
    h("td", { "data-label": "Action" }, a.kind.replaceAll("_", " ")),
    h("td", { "data-label": "Reason" }, a.reason || "—"),
    h("td", { class: "muted", "data-label": "By" }, a.requested_by),
    h("td", { "data-label": "State" }, h("span", { class: `badge ${a.state}` }, a.state)),
    h("td", { class: `${a.error ? "neg" : "muted"} wrap-text result`, "data-label": "Result" }, actionOutcome(a)))));
}

/** What an action came to, in words: "order close-12: filled 120 @ 27.12 (slippage 0.03 %) · trade #55 PnL +22.21". */
export function actionOutcome(action) {
  const r = action.result || {};
  const parts = [];
  if (r.position) parts.push(`position ${r.position}`);
  if (r.order) {
    let text = `order ${r.order}: ${String(r.status || "").replaceAll("_", " ")}`;
    if (toNumber(r.filled)) text += ` ${fmtQty(r.filled)}`;
    if (r.average_price) text += ` @ ${fmtPrice(r.average_price)}`;
    if (toNumber(r.slippage_percent) !== null) text += ` (slippage ${fmtPct(r.slippage_percent, { digits: 3 })})`;
    parts.push(text);
  }
  if (r.trade) parts.push(`trade #${r.trade}${r.pnl !== undefined ? ` PnL ${fmtProfit(r.pnl, null, "")}` : ""}${r.exit_price ? ` exit ${fmtPrice(r.exit_price)}` : ""}`);
  const known = new Set(["position", "order", "status", "filled", "average_price", "slippage_percent", "trade", "pnl", "exit_price"]);
  for (const [key, value] of Object.entries(r)) {
    if (!known.has(key)) parts.push(`${key.replaceAll("_", " ")} ${typeof value === "object" ? JSON.stringify(value) : value}`);
  }
  if (action.error) parts.unshift(action.error);
  return parts.join(" · ") || (action.state === "pending" || action.state === "running" ? "in progress" : "—");
}

async function reload() {
  try {
    const id = position.id;
    const [fresh, health, prices, halt] = await Promise.all([
      apiFetch(`${state.endpoints.positions}${id}/`),
      apiFetch(state.endpoints.position_health.replace("{id}", id)),
      apiFetch(state.endpoints.candles.replace("{id}", id)),
      apiFetch(state.endpoints.halt)]);
    position = fresh;
    candles = prices;
    history.splice(0, history.length, ...health.map(toPoint));
    renderFacts(); renderEvents(); chart.update([{ name: "score", points: history }]);
    prices_.update(candles.candles, priceMarks());
    renderHalt(halt);
    healthCount();
  } catch (err) {
    toast(`Could not reload: ${err.message}`, { error: true });
    throw err;
  }
}

function bindClose() {
  $("close-button")?.addEventListener("click", async () => {
    if (!window.confirm(`Emergency close #${position.id} ${position.symbol} at market?`)) return;
    const key = window.crypto?.randomUUID ? window.crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    try {
      const action = await apiFetch(state.endpoints.actions, {
        method: "POST", body: { kind: "emergency_close", position: position.id, reason: "manual", idempotency_key: key },
      });
      state.actions.push(action);
      renderActions();
      toast(`Close queued (action ${action.id}).`);
    } catch (err) {
      toast(`Close refused: ${err.message}`, { error: true });
    }
  });
}

let candles = state.candles;
$("price-market").textContent = `${position.symbol} · ${candles.timeframe}`;
renderFacts();
renderEvents();
renderOrders();
renderActions();
const chart = renderChart();
const prices_ = priceChart($("price-chart"), candles.candles, priceMarks());
renderHalt(state.halt || { trading_halted: false });
bindHaltControls(state.endpoints);
bindClose();
setInterval(renderFacts, 1000);

const handlers = {
  "health.updated": (payload) => {
    const update = (payload.positions || []).find((p) => p.id === position.id);
    if (!update) return;
    position = mergeHealth(position, update);
    history.push({ x: Date.now(), y: toNumber(update.score), snapshot: { danger_level: update.danger_level } });
    renderFacts();
    healthCount();
    chart.update([{ name: "score", points: history }]);
    prices_.update(candles.candles, priceMarks());
  },
  "position.state_changed": (payload) => { if (payload.id === position.id) reload(); },
  "position.closed": (payload) => { if ((payload.id ?? payload.position_id) === position.id) reload(); },
  "trading.halted": renderHalt,
  "trading.resumed": renderHalt,
};
const freshness = new Freshness({ reload });
const pill = bindLiveStatus($("live-status"));
const live = new LiveChannel(state.endpoints.live, {
  onEvent: (event, payload) => handlers[event]?.(payload),
  onStatus: (status, info) => { pill(status, info); freshness.status(status, info); },
  onReconnect: () => freshness.reloaded(reload()),
});
live.start();
window.liveChannel = live;
