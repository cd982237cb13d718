// The position page: facts, health history chart, events, orders and actions;
// the live channel keeps the facts and the chart current.

import { apiFetch, toast } from "./api.js";
import { lineChart } from "./charts.js";
import {
  fmtAgo, fmtCountdown, fmtDateTime, fmtDuration, fmtMoney, fmtPct, fmtPrice, fmtQty, h, initialState, signClass, toNumber,
} from "./format.js";
import { bindHaltControls, renderHalt } from "./halt.js";
import { bindLiveStatus, LiveChannel } from "./live.js";
import { ageSeconds, componentBreakdown, countdownSeconds, mergeHealth, scoreCell } from "./positions.js";

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
  $("pos-state").replaceChildren(h("span", { class: `badge ${position.state}` }, position.state));
  $("pos-score").replaceChildren(scoreCell(position));
  const secs = countdownSeconds(position);
  const held = position.state === "CLOSED";
  $("pos-facts").replaceChildren(
    fact("Strategy", position.strategy),
    fact("Size", fmtQty(position.quantity)),
    fact("Entry", fmtPrice(position.entry_price)),
    fact("Mark", fmtPrice(position.mark_price)),
    fact("Unrealised PnL", fmtMoney(position.unrealised_pnl), signClass(position.unrealised_pnl)),
    fact("Danger level", position.danger_level || "—"),
    fact("Opened", fmtDateTime(position.opened_at)),
    fact(held ? "Held for" : "Age", fmtDuration(held
      ? (new Date(position.closed_at) - new Date(position.opened_at)) / 1000 : ageSeconds(position))),
    fact("Timeout in", held ? "—" : fmtCountdown(secs), secs !== null && secs < 0 && !held ? "neg" : ""),
    fact("Health checked", position.health_checked_at ? fmtAgo(position.health_checked_at) : "never"),
    fact("Close reason", position.close_reason || "—"),
    fact("Account", position.account),
  );
  const closeButton = $("close-button");
  if (closeButton) closeButton.hidden = position.state === "CLOSING" || position.state === "CLOSED";
  $("components").replaceChildren(componentBreakdown(position.health));
  $("components-when").textContent = position.health?.taken_at ? fmtDateTime(position.health.taken_at) : "";
}

function renderChart() {
  $("health-count").textContent = history.length ? `${history.length} checks` : "";
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
    h("td", { class: "nowrap muted" }, fmtDateTime(e.created_at)),
    h("td", {}, e.kind.replaceAll("_", " ")),
    h("td", { class: "nowrap" }, e.from_state || e.to_state ? `${e.from_state || "·"} → ${e.to_state || "·"}` : ""),
    h("td", {}, e.reason),
    h("td", { class: "muted" }, e.actor))));
}

function renderOrders() {
  const body = $("orders-table").querySelector("tbody");
  $("orders-count").textContent = `(${state.orders.length})`;
  if (!state.orders.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 11, class: "faint" }, "No orders for this position.")));
    return;
  }
  body.replaceChildren(...state.orders.map((o) => h("tr", {},
    h("td", { class: "nowrap muted" }, fmtDateTime(o.created_at)),
    h("td", { class: "mono", title: o.exchange_order_id ? `exchange id ${o.exchange_order_id}` : null }, o.client_order_id),
    h("td", {}, h("span", { class: `badge side-${o.side === "buy" ? "long" : "short"}` }, o.side.toUpperCase())),
    h("td", {}, o.purpose.replaceAll("_", " ")),
    h("td", { class: "num" }, fmtQty(o.quantity)),
    h("td", { class: "num" }, fmtQty(o.filled_quantity)),
    h("td", { class: "num" }, fmtPrice(o.average_fill_price)),
    h("td", { class: "num" }, fmtPct(o.slippage_percent, { digits: 3 })),
    h("td", { class: "num" }, String(o.attempts)),
    h("td", { title: o.last_error || null }, h("span", { class: `badge ${o.status}` }, o.status.replaceAll("_", " "))),
    state.user.is_staff ? h("td", { class: "num" }, FINAL_ORDER_STATUSES.has(o.status) ? null
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
    h("td", { class: "nowrap muted" }, fmtDateTime(a.created_at)),
    h("td", {}, a.kind.replaceAll("_", " ")),
    h("td", {}, a.reason || "—"),
    h("td", { class: "muted" }, a.requested_by),
    h("td", {}, h("span", { class: `badge ${a.state}` }, a.state)),
    h("td", { class: "muted" }, a.error || (Object.keys(a.result || {}).length ? JSON.stringify(a.result) : "")))));
}

async function reload() {
  try {
    position = await apiFetch(`${state.endpoints.positions}${position.id}/`);
    const fresh = await apiFetch(`${state.endpoints.positions}${position.id}/health/`);
    history.splice(0, history.length, ...fresh.map(toPoint));
    renderFacts(); renderEvents(); chart.update([{ name: "score", points: history }]);
    $("health-count").textContent = `${history.length} checks`;
  } catch (err) {
    toast(`Could not reload: ${err.message}`, { error: true });
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

renderFacts();
renderEvents();
renderOrders();
renderActions();
const chart = renderChart();
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
    chart.update([{ name: "score", points: history }]);
  },
  "position.state_changed": (payload) => { if (payload.id === position.id) reload(); },
  "position.closed": (payload) => { if ((payload.id ?? payload.position_id) === position.id) reload(); },
  "trading.halted": renderHalt,
  "trading.resumed": renderHalt,
};
new LiveChannel(state.endpoints.live, {
  onEvent: (event, payload) => handlers[event]?.(payload),
  onStatus: bindLiveStatus($("live-status")),
  onReconnect: reload,
}).start();
