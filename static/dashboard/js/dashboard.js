// The dashboard page: open positions, alerts, halt, execution, performance and the overview
// (closed trades, profit per period, strategies, accounts), kept current by the live channel
// (/ws/health/) without reloading the page; while the channel is down the page says it is stale.

import { apiFetch, toast } from "./api.js";
import { lineChart } from "./charts.js";
import {
  agoNode, fmtAmount, fmtCountdown, fmtDateTime, fmtDuration, fmtMoney, fmtPct, fmtQty, fmtRatio, fmtTime, h,
  initialState, signClass, splitSymbol, toNumber,
} from "./format.js";
import { GuardPanel } from "./guard.js";
import { Freshness } from "./freshness.js";
import { applyHealthMarks, applyMarks, reloadAccountsSoon, startAccounts } from "./accounts.js";
import { bindHaltControls, renderHalt } from "./halt.js";
import { bindLiveStatus, LiveChannel } from "./live.js";
import { ClosedTrades, loadStrategies, ProfitTable } from "./overview.js";
import { countdownSeconds, mergeHealth, positionRow, tickClocks } from "./positions.js";

const state = initialState();
const staff = state.user.is_staff;
const currency = state.currencies?.common || "";
const positions = new Map(state.positions.map((p) => [p.id, p]));
const alerts = new Map(state.alerts.map((a) => [a.id, a]));
const ACTIVE = new Set(["OPEN", "WARNING", "CRITICAL", "CLOSING"]);

const $ = (id) => document.getElementById(id);
const guard = new GuardPanel(state.endpoints, { staff, initial: state.guard });
let guardReload = null;

/** Guard events come in bursts (a trip moves several scopes): one reload per burst. */
function reloadGuardSoon() {
  clearTimeout(guardReload);
  guardReload = setTimeout(() => guard.reload(), 300);
}

// --- positions ----------------------------------------------------------------------

function sortedPositions() {
  return [...positions.values()].sort((a, b) => new Date(a.opened_at) - new Date(b.opened_at) || a.id - b.id);
}

function renderPositions() {
  const body = $("positions-body");
  const list = sortedPositions();
  body.replaceChildren(...list.map((p) => positionRow(p, { staff, onClose: requestClose, currency })));
  $("positions-empty").hidden = list.length > 0;
  $("positions-count").textContent = list.length ? `(${list.length})` : "";
  renderKpis();
}

function replaceRow(position, { flash = false } = {}) {
  const body = $("positions-body");
  const old = body.querySelector(`tr[data-position-id="${position.id}"]`);
  if (!old) { renderPositions(); return; }
  const row = positionRow(position, { staff, onClose: requestClose, currency });
  if (flash) row.classList.add("flash");
  old.replaceWith(row);
  renderKpis();
}

async function loadPosition(id) {
  try {
    const position = await apiFetch(`${state.endpoints.positions}${id}/`);
    if (ACTIVE.has(position.state)) {
      positions.set(position.id, position);
      renderPositions();
    }
  } catch (err) {
    toast(`Position #${id}: ${err.message}`, { error: true });
  }
}

async function reloadPositions() {
  try {
    const page = await apiFetch(state.endpoints.positions, { params: { active: "true", limit: 500 } });
    positions.clear();
    for (const p of page.results) positions.set(p.id, p);
    renderPositions();
  } catch (err) {
    toast(`Could not reload positions: ${err.message}`, { error: true });
  }
}

function applyHealth(payload) {
  for (const update of payload.positions || []) {
    const current = positions.get(update.id);
    if (!current) {
      if (!update.state || ACTIVE.has(update.state)) loadPosition(update.id);
      continue;
    }
    const merged = mergeHealth(current, update);
    positions.set(merged.id, merged);
    replaceRow(merged, { flash: String(current.health_score) !== String(merged.health_score) });
  }
}

function applyStateChange(payload) {
  const current = positions.get(payload.id);
  if (!ACTIVE.has(payload.state)) {
    positions.delete(payload.id);
    renderPositions();
    return;
  }
  if (!current) { loadPosition(payload.id); return; }
  // The payload carries the one danger level for the new state (computed by the server).
  const merged = { ...current, state: payload.state, state_changed_at: payload.state_changed_at };
  if (payload.danger_level !== undefined) merged.danger_level = payload.danger_level;
  positions.set(merged.id, merged);
  replaceRow(merged, { flash: true });
}

// The timeout pass announces ids only: their danger levels come with a reload of the list.
let bulkReload = null;
function applyBulkStateChange() {
  clearTimeout(bulkReload);
  bulkReload = setTimeout(reloadPositions, 150);
}

function requestClose(position) {
  const ok = window.confirm(
    `Emergency close #${position.id} ${position.side.toUpperCase()} ${fmtQty(position.quantity)} ${position.symbol} at market?`);
  if (!ok) return;
  const key = window.crypto?.randomUUID ? window.crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  apiFetch(state.endpoints.actions, {
    method: "POST",
    body: { kind: "emergency_close", position: position.id, reason: "manual", idempotency_key: key },
  }).then((action) => {
    toast(`Close of #${position.id} queued (action ${action.id}, ${action.state}).`);
  }).catch((err) => toast(`Close of #${position.id} refused: ${err.message}`, { error: true }));
}

// --- KPIs ---------------------------------------------------------------------------

function renderKpis() {
  const list = [...positions.values()];
  $("kpi-open").textContent = String(list.length);
  const longs = list.filter((p) => p.side === "long").length;
  $("kpi-open-sub").textContent = list.length ? `${longs} long · ${list.length - longs} short` : "\u00a0";

  const pnls = list.map((p) => toNumber(p.unrealised_pnl)).filter((v) => v !== null);
  const total = pnls.reduce((a, b) => a + b, 0);
  const upnl = $("kpi-upnl");
  upnl.textContent = pnls.length ? fmtAmount(total, currency) : "—";
  upnl.className = `value ${signClass(total)}`;
  // The same % as each row: of the entry notional of what is held.
  const notional = list.filter((p) => toNumber(p.unrealised_pnl) !== null)
    .reduce((sum, p) => sum + toNumber(p.entry_price) * toNumber(p.quantity), 0);
  $("kpi-upnl-sub").textContent = pnls.length
    ? `${notional ? `${fmtPct((total / notional) * 100, { signed: true })} · ` : ""}${pnls.filter((v) => v < 0).length} losing`
    : "\u00a0";

  const scored = list.filter((p) => toNumber(p.health_score) !== null);
  const worst = scored.sort((a, b) => toNumber(a.health_score) - toNumber(b.health_score))[0];
  const health = $("kpi-health");
  health.textContent = worst ? toNumber(worst.health_score).toFixed(1) : "—";
  health.className = `value ${worst?.danger_level === "CRITICAL" ? "neg" : ""}`;
  $("kpi-health-sub").textContent = worst ? `${splitSymbol(worst.symbol).pair} #${worst.id}` : "\u00a0";

  // The rows' own levels (the one danger level), so the counts always equal the rows.
  const count = (level) => list.filter((p) => (p.danger_level || "") === level).length;
  $("kpi-danger").replaceChildren(
    h("span", { class: count("CRITICAL") ? "neg" : "", "data-level": "CRITICAL" }, String(count("CRITICAL"))), " · ",
    h("span", { class: count("WARNING") ? "warn" : "", "data-level": "WARNING" }, String(count("WARNING"))), " · ",
    h("span", { "data-level": "SAFE" }, String(count("SAFE"))));
  const unscored = count("");
  $("kpi-danger-sub").textContent = `critical · warning · safe${unscored ? ` · ${unscored} unscored` : ""}`;

  renderNextTimeout();
  const open = [...alerts.values()].filter((a) => !a.resolved_at);
  $("kpi-alerts").textContent = String(open.length);
  $("kpi-alerts-sub").textContent = `${open.filter((a) => a.severity === "CRITICAL").length} critical`;
}

function renderNextTimeout() {
  const holding = [...positions.values()].filter((p) => p.state !== "CLOSING" && p.timeout_due_at);
  const next = holding.sort((a, b) => new Date(a.timeout_due_at) - new Date(b.timeout_due_at))[0];
  const node = $("kpi-timeout");
  const secs = next ? countdownSeconds(next) : null;
  node.textContent = next ? fmtCountdown(secs) : "—";
  node.className = `value ${secs !== null && secs < 0 ? "neg" : ""}`;
  $("kpi-timeout-sub").textContent = next ? `${splitSymbol(next.symbol).pair} #${next.id}` : "\u00a0";
}

// --- alerts -------------------------------------------------------------------------

function renderAlerts() {
  // Open alerts first (newest first), then the recently resolved ones.
  const list = [...alerts.values()].sort((a, b) => (!!a.resolved_at - !!b.resolved_at)
    || new Date(b.last_seen) - new Date(a.last_seen)).slice(0, 50);
  const open = list.filter((a) => !a.resolved_at);
  $("alerts-feed").replaceChildren(...list.map(alertItem));
  $("alerts-empty").hidden = list.length > 0;
  $("alerts-count").textContent = open.length ? `(${open.length} open)` : "";
  renderKpis();
}

async function reloadAlerts() {
  try {
    const page = await apiFetch(state.endpoints.alerts, { params: { open: "true", limit: 50 } });
    alerts.clear();
    for (const a of page.results) alerts.set(a.id, a);
    renderAlerts();
  } catch (err) {
    toast(`Could not reload alerts: ${err.message}`, { error: true });
  }
}

async function acknowledge(alert, button) {
  button.disabled = true;
  try {
    applyAlert(await apiFetch(state.endpoints.acknowledge.replace("{id}", alert.id), { method: "POST" }));
  } catch (err) {
    button.disabled = false;
    toast(`Acknowledge refused: ${err.message}`, { error: true });
  }
}

function alertItem(alert) {
  const details = [alert.kind.replaceAll("_", " ")];
  if (alert.occurrences > 1) details.push(`seen ${alert.occurrences}×`);
  if (alert.acknowledged && !alert.resolved_at) details.push(`acknowledged by ${alert.acknowledged_by || "operator"}`);
  return h("li", { class: alert.resolved_at ? "resolved" : "", dataset: { alertId: String(alert.id) } },
    h("div", { class: "head" },
      h("span", { class: `badge ${alert.severity}` }, alert.severity),
      alert.position
        ? h("a", { href: `/positions/${alert.position}/`, class: "nowrap" },
          `${alert.symbol ? splitSymbol(alert.symbol).pair : "position"} #${alert.position}`)
        : h("span", {}, "platform"),
      agoNode(alert.last_seen, { cls: "when" })),
    h("div", { class: "msg" }, alert.message),
    h("div", { class: "foot" },
      h("span", { class: "faint small" }, details.join(" · "),
        alert.resolved_at ? agoNode(alert.resolved_at, { prefix: " · resolved " }) : null),
      staff && !alert.acknowledged && !alert.resolved_at
        ? h("button", { class: "btn small", type: "button", "data-role": "acknowledge",
                        onclick: (ev) => acknowledge(alert, ev.currentTarget) }, "Acknowledge")
        : null));
}

function applyAlert(alert, { resolved = false } = {}) {
  if (!alert || alert.id === undefined) return;
  const known = alerts.has(alert.id);
  const merged = { ...(alerts.get(alert.id) || {}), ...alert };
  if (resolved && !merged.resolved_at) merged.resolved_at = new Date().toISOString();
  alerts.set(merged.id, merged);
  renderAlerts();
  const node = document.querySelector(`li[data-alert-id="${merged.id}"]`);
  if (node && !known) node.classList.add("new");
}

// --- performance ----------------------------------------------------------------------
// Shapes of /api/analytics/performance, /equity and /execution: every metric is
// {value, sample_size, undefined_reason?}; ratios (win rate, drawdown) are fractions.

const metric = (report, name) => report.metrics?.[name] ?? report[name] ?? {};
const value = (report, name) => toNumber(metric(report, name).value);
const undefinedReason = (report, name) => (metric(report, name).undefined_reason || "").replaceAll("_", " ");

const METRICS = [
  {
    label: "Trades", name: "trades", value: (r) => String(value(r, "trades") ?? "—"),
    sub: (r) => `${value(r, "wins") ?? 0} won · ${value(r, "losses") ?? 0} lost`,
  },
  {
    label: "Net PnL", name: "total_pnl", value: (r) => fmtAmount(value(r, "total_pnl"), currency),
    cls: (r) => signClass(value(r, "total_pnl")),
    sub: (r) => `${fmtPct(value(r, "return_percent"), { signed: true })} of start equity`,
  },
  {
    label: "Win rate", name: "win_rate", value: (r) => fmtPct(value(r, "win_rate"), { ratio: true, digits: 1 }),
    sub: (r) => (value(r, "payoff_ratio") !== null ? `payoff ${fmtRatio(value(r, "payoff_ratio"))}` : undefinedReason(r, "win_rate")),
  },
  {
    label: "Profit factor", name: "profit_factor", value: (r) => fmtRatio(value(r, "profit_factor")),
    sub: (r) => undefinedReason(r, "profit_factor") || "gross profit ÷ gross loss",
  },
  {
    label: "Expectancy", name: "expectancy", value: (r) => fmtAmount(value(r, "expectancy"), currency),
    cls: (r) => signClass(value(r, "expectancy")), sub: () => "mean PnL per trade",
  },
  {
    label: "Sharpe", name: "sharpe_ratio", value: (r) => fmtRatio(value(r, "sharpe_ratio")),
    sub: (r) => undefinedReason(r, "sharpe_ratio") || `daily, annualised · ${metric(r, "sharpe_ratio").sample_size ?? 0} d`,
  },
  {
    label: "Sortino", name: "sortino_ratio", value: (r) => fmtRatio(value(r, "sortino_ratio")),
    sub: (r) => undefinedReason(r, "sortino_ratio") || "daily, annualised",
  },
  {
    label: "Max drawdown", name: "max_drawdown", value: (r) => fmtPct(value(r, "max_drawdown"), { ratio: true }),
    cls: (r) => (value(r, "max_drawdown") ? "neg" : ""),
    sub: (r) => fmtAmount(value(r, "max_drawdown_amount"), currency),
  },
  {
    label: "Avg holding", name: "holding_seconds_mean", value: (r) => fmtDuration(value(r, "holding_seconds_mean")),
    sub: (r) => `median ${fmtDuration(value(r, "holding_seconds_median"))}`,
  },
  {
    label: "Avg win / loss", name: "average_win",
    value: (r) => `${fmtMoney(value(r, "average_win"))} / ${fmtMoney(value(r, "average_loss"))}`,
    sub: (r) => `fees paid ${fmtAmount(value(r, "fees_paid"), currency, { signed: false })}`,
  },
];

let equityChart = null;
let periodRequest = 0;

let currentPeriod = state.periods[0];

async function loadPerformance(period = currentPeriod) {
  currentPeriod = period;
  const ticket = ++periodRequest;
  for (const tab of document.querySelectorAll("#period-tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.period === period));
  }
  const panel = $("performance");
  panel.dataset.loading = "true";
  try {
    const [report, equity] = await Promise.all([
      apiFetch(state.endpoints.performance, { params: { period } }),
      apiFetch(state.endpoints.equity, { params: { period } }),
    ]);
    if (ticket !== periodRequest) return;
    renderPerformance(report, equity);
    panel.dataset.period = period;
    panel.dataset.tradeCount = String(report.trade_count);
  } catch (err) {
    if (ticket !== periodRequest) return;
    $("perf-metrics").replaceChildren(h("div", { class: "panel-empty" }, `Performance unavailable: ${err.message}`));
  } finally {
    if (ticket === periodRequest) panel.dataset.loading = "false";
  }
}

function renderPerformance(report, equity) {
  const win = report.window || {};
  $("perf-range").textContent = `${win.start ? fmtDateTime(win.start) : "first trade"} → ${win.end ? fmtDateTime(win.end) : "now"}`
    + `${report.time_zone ? ` (${report.time_zone})` : ""}${report.cached ? " · cached" : ""}`;
  const definitions = state.metric_definitions || {};
  $("perf-metrics").replaceChildren(...METRICS.map((m) =>
    h("div", { class: "metric", dataset: { metric: m.name }, title: definitions[m.name] || null },
      h("div", { class: "label" }, m.label),
      h("div", { class: `value ${m.cls ? m.cls(report) : ""}` }, m.value(report)),
      h("div", { class: "sub" }, (m.sub && m.sub(report)) || "\u00a0"))));
  renderTrades("top-trades", report.top_trades || []);
  renderTrades("worst-trades", report.worst_trades || []);
  const points = (equity.points || []).map((p) => ({ x: new Date(p.time).getTime(), y: toNumber(p.equity) }))
    .filter((p) => p.y !== null);
  // Equity changes only when a trade closes: a step line, held until the window's end or now.
  const until = win.end ? Math.min(Date.now(), new Date(win.end).getTime()) : Date.now();
  const series = [{ name: "equity", points, area: true, step: true, extendTo: until }];
  const base = toNumber(equity.start_equity);
  const opts = {
    label: "Equity curve", empty: "No closed trades in this period.",
    yFormat: (v) => v.toLocaleString("en-US", { maximumFractionDigits: 0 }),
    tipLabel: (p) => `equity ${fmtAmount(p.y, currency, { signed: false })}`,
    lines: base !== null ? [{ y: base, cls: "baseline" }] : [],
  };
  if (equityChart) equityChart.update(series, opts); else equityChart = lineChart($("equity-chart"), series, opts);
  $("equity-note").textContent = base !== null
    ? `start ${fmtAmount(base, currency, { signed: false })} → end ${fmtAmount(report.end_equity, currency, { signed: false })}` : "";
}

function renderTrades(id, trades) {
  const body = $(id).querySelector("tbody");
  if (!trades.length) {
    body.replaceChildren(h("tr", {}, h("td", { class: "faint", colspan: 5 },
      id === "top-trades" ? "No winning trades." : "No losing trades.")));
    return;
  }
  body.replaceChildren(...trades.slice(0, 5).map((t) => h("tr", {
    title: `#${t.id} · ${t.strategy} · held ${fmtDuration(t.holding_seconds)} · exit ${t.exit_reason}`,
  },
    h("td", { class: "sym" }, splitSymbol(t.symbol).pair,
      h("span", { class: `trade-side side-${t.side}` }, (t.side || "").toUpperCase())),
    h("td", { class: "muted nowrap hide-phone" }, fmtDateTime(t.closed_at).slice(5)),
    h("td", { class: `num ${signClass(t.pnl)}`, "data-role": "pnl" }, fmtMoney(t.pnl),
      currency ? h("span", { class: "unit" }, currency) : null),
    h("td", { class: `num ${signClass(t.pnl_percent)}` }, fmtPct(t.pnl_percent, { signed: true })))));
}

// --- execution metrics ------------------------------------------------------------------

const EXEC_ROWS = [
  ["Orders", (m) => `${value(m, "orders") ?? "—"}`, (m) => `${value(m, "filled") ?? 0} filled · ${value(m, "open") ?? 0} open`],
  ["Success rate", (m) => fmtPct(value(m, "success_rate"), { ratio: true, digits: 1 })],
  ["Retries", (m) => `${value(m, "retries") ?? "—"}`,
    (m) => `${value(m, "orders_retried") ?? 0} order${value(m, "orders_retried") === 1 ? "" : "s"} retried`],
  ["Timeouts", (m) => `${value(m, "timeouts") ?? "—"}`],
  ["Rejected / failed", (m) => `${value(m, "rejected") ?? "—"} / ${value(m, "failed") ?? "—"}`],
  ["Latency mean / p95", (m) => `${fmtRatio(value(m, "latency_ms_mean"), 0)} / ${fmtRatio(value(m, "latency_ms_p95"), 0)} ms`],
  ["Slippage mean / worst", (m) => `${fmtPct(value(m, "slippage_percent_mean"), { digits: 3 })} / ${fmtPct(value(m, "slippage_percent_worst"), { digits: 3 })}`],
];

async function loadExecution() {
  try {
    const report = await apiFetch(state.endpoints.execution);
    const overall = report.overall || {};
    $("exec-metrics").replaceChildren(...EXEC_ROWS.flatMap(([label, show, sub]) => [
      h("dt", {}, label, sub ? h("span", { class: "faint small block" }, sub(overall)) : null),
      h("dd", {}, show(overall))]));
    $("exec-updated").textContent = `all time · ${fmtTime(new Date().toISOString())}`;
  } catch (err) {
    $("exec-metrics").replaceChildren(h("dt", {}, "Unavailable"), h("dd", { class: "faint" }, err.message));
  }
}

// --- the overview and what a closed trade changes -----------------------------------------------------

const closedTrades = new ClosedTrades(state);
const profitTable = new ProfitTable(state);

let reportsReload = null;
/** A trade closed (or trades were imported): every figure built from trades is read again. */
function reloadReports() {
  clearTimeout(reportsReload);
  reportsReload = setTimeout(() => Promise.all([
    loadPerformance(), closedTrades.load(), profitTable.load(), loadStrategies(state, currentPeriod),
    reloadAccountsSoon(0)]), 250);
}

async function reloadHalt() {
  renderHalt(await apiFetch(state.endpoints.halt));
}

/** Everything the page shows, read again (after a reconnect: events may have been missed). */
function reloadAll() {
  return Promise.all([reloadPositions(), reloadAlerts(), reloadHalt(), loadExecution(), loadPerformance(),
    closedTrades.load(), profitTable.load(), loadStrategies(state, currentPeriod), reloadAccountsSoon(0)]);
}

// --- live wiring --------------------------------------------------------------------------

const handlers = {
  "health.updated": applyHealth,
  "position.opened": (p) => { loadPosition(p.id); reloadAccountsSoon(); },
  "position.state_changed": applyStateChange,
  "positions.state_changed": applyBulkStateChange,
  "position.closed": (p) => { positions.delete(p.id ?? p.position_id); renderPositions(); reloadAccountsSoon(); },
  "trade.closed": reloadReports,
  "trades.imported": reloadReports,
  "alert.raised": (p) => applyAlert(p),
  "alert.resolved": (p) => applyAlert(p, { resolved: true }),
  "alert.acknowledged": (p) => applyAlert(p),
  "trading.halted": (p) => { renderHalt(p); reloadGuardSoon(); },
  "trading.resumed": (p) => { renderHalt(p); reloadGuardSoon(); },
  "guard.state_changed": reloadGuardSoon,
  "guard.order_refused": reloadGuardSoon,
  "positions.marked": (p) => { if (applyMarks(positions, p)) renderPositions(); },
  "health.marked": (p) => { if (applyHealthMarks(positions, p)) renderPositions(); },
};

function start() {
  renderPositions();
  renderAlerts();
  renderHalt(state.halt);
  bindHaltControls(state.endpoints);
  for (const tab of document.querySelectorAll("#period-tabs button")) {
    tab.addEventListener("click", () => {
      loadPerformance(tab.dataset.period);
      loadStrategies(state, tab.dataset.period);
    });
  }
  loadPerformance(state.periods[0]);
  loadStrategies(state, state.periods[0]);
  closedTrades.load();
  profitTable.load();
  loadExecution();
  setInterval(loadExecution, 30000);
  guard.render();
  setInterval(() => guard.reload(), 15000);  // equity and marks move without events
  startAccounts();
  setInterval(() => {
    tickClocks($("positions-body").rows, positions);
    renderNextTimeout();
  }, 1000);
  const freshness = new Freshness({ reload: reloadAll });
  const pill = bindLiveStatus($("live-status"));
  const live = new LiveChannel(state.endpoints.live, {
    onEvent: (event, payload) => handlers[event]?.(payload),
    onStatus: (status, info) => { pill(status, info); freshness.status(status, info); },
    onReconnect: () => freshness.reloaded(Promise.all([reloadAll(), guard.reload()])),
  });
  live.start();
  window.liveChannel = live;
}

start();
