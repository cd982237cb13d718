// The dashboard page: open positions, alerts, halt, execution and performance,
// kept current by the live channel (/ws/health/) without reloading the page.

import { apiFetch, toast } from "./api.js";
import { lineChart } from "./charts.js";
import {
  fmtAgo, fmtCountdown, fmtDateTime, fmtDuration, fmtMoney, fmtPct, fmtQty, fmtRatio, fmtTime, h,
  initialState, signClass, splitSymbol, toNumber,
} from "./format.js";
import { applyHealthMarks, applyMarks, startAccounts } from "./accounts.js";
import { bindHaltControls, renderHalt } from "./halt.js";
import { bindLiveStatus, LiveChannel } from "./live.js";
import { countdownSeconds, mergeHealth, positionRow, tickClocks } from "./positions.js";

const state = initialState();
const staff = state.user.is_staff;
const positions = new Map(state.positions.map((p) => [p.id, p]));
const alerts = new Map(state.alerts.map((a) => [a.id, a]));
const ACTIVE = new Set(["OPEN", "WARNING", "CRITICAL", "CLOSING"]);

const $ = (id) => document.getElementById(id);

// --- positions ----------------------------------------------------------------------

function sortedPositions() {
  return [...positions.values()].sort((a, b) => new Date(a.opened_at) - new Date(b.opened_at) || a.id - b.id);
}

function renderPositions() {
  const body = $("positions-body");
  const list = sortedPositions();
  body.replaceChildren(...list.map((p) => positionRow(p, { staff, onClose: requestClose })));
  $("positions-empty").hidden = list.length > 0;
  $("positions-count").textContent = list.length ? `(${list.length})` : "";
  renderKpis();
}

function replaceRow(position, { flash = false } = {}) {
  const body = $("positions-body");
  const old = body.querySelector(`tr[data-position-id="${position.id}"]`);
  if (!old) { renderPositions(); return; }
  const row = positionRow(position, { staff, onClose: requestClose });
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
  const merged = { ...current, state: payload.state, state_changed_at: payload.state_changed_at };
  positions.set(merged.id, merged);
  replaceRow(merged, { flash: true });
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
  upnl.textContent = pnls.length ? fmtMoney(total) : "—";
  upnl.className = `value ${signClass(total)}`;
  $("kpi-upnl-sub").textContent = pnls.length ? `${pnls.filter((v) => v < 0).length} losing` : "\u00a0";

  const scored = list.filter((p) => toNumber(p.health_score) !== null);
  const worst = scored.sort((a, b) => toNumber(a.health_score) - toNumber(b.health_score))[0];
  const health = $("kpi-health");
  health.textContent = worst ? toNumber(worst.health_score).toFixed(1) : "—";
  health.className = `value ${worst?.danger_level === "CRITICAL" ? "neg" : ""}`;
  $("kpi-health-sub").textContent = worst ? `${splitSymbol(worst.symbol).pair} #${worst.id}` : "\u00a0";

  const count = (level) => list.filter((p) => p.danger_level === level).length;
  $("kpi-danger").replaceChildren(
    h("span", { class: count("CRITICAL") ? "neg" : "" }, String(count("CRITICAL"))), " · ",
    h("span", { style: count("WARNING") ? "color:var(--warn)" : "" }, String(count("WARNING"))), " · ",
    String(count("SAFE")));

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
  if (alert.resolved_at) details.push(`resolved ${fmtAgo(alert.resolved_at)}`);
  else if (alert.acknowledged) details.push(`acknowledged by ${alert.acknowledged_by || "operator"}`);
  return h("li", { class: alert.resolved_at ? "resolved" : "", dataset: { alertId: String(alert.id) } },
    h("div", { class: "head" },
      h("span", { class: `badge ${alert.severity}` }, alert.severity),
      alert.position
        ? h("a", { href: `/positions/${alert.position}/`, class: "nowrap" },
          `${alert.symbol ? splitSymbol(alert.symbol).pair : "position"} #${alert.position}`)
        : h("span", {}, "platform"),
      h("span", { class: "when", title: fmtDateTime(alert.last_seen) }, fmtAgo(alert.last_seen))),
    h("div", { class: "msg" }, alert.message),
    h("div", { class: "foot" },
      h("span", { class: "faint small" }, details.join(" · ")),
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
    label: "Net PnL", name: "total_pnl", value: (r) => fmtMoney(value(r, "total_pnl")),
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
    label: "Expectancy", name: "expectancy", value: (r) => fmtMoney(value(r, "expectancy")),
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
    sub: (r) => fmtMoney(value(r, "max_drawdown_amount")),
  },
  {
    label: "Avg holding", name: "holding_seconds_mean", value: (r) => fmtDuration(value(r, "holding_seconds_mean")),
    sub: (r) => `median ${fmtDuration(value(r, "holding_seconds_median"))}`,
  },
  {
    label: "Avg win / loss", name: "average_win",
    value: (r) => `${fmtMoney(value(r, "average_win"))} / ${fmtMoney(value(r, "average_loss"))}`,
    sub: (r) => `fees paid ${fmtMoney(value(r, "fees_paid"), { signed: false })}`,
  },
];

let equityChart = null;
let periodRequest = 0;

async function loadPerformance(period) {
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
  const series = [{ name: "equity", points, area: true }];
  const base = toNumber(equity.start_equity);
  const opts = {
    label: "Equity curve", empty: "No closed trades in this period.",
    yFormat: (v) => v.toLocaleString("en-US", { maximumFractionDigits: 0 }),
    tipLabel: (p) => `equity ${p.y.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`,
    lines: base !== null ? [{ y: base, cls: "baseline" }] : [],
  };
  if (equityChart) equityChart.update(series, opts); else equityChart = lineChart($("equity-chart"), series, opts);
  $("equity-note").textContent = base !== null
    ? `start ${fmtMoney(base, { signed: false })} → end ${fmtMoney(report.end_equity, { signed: false })}` : "";
}

function renderTrades(id, trades) {
  const body = $(id).querySelector("tbody");
  if (!trades.length) {
    body.replaceChildren(h("tr", {}, h("td", { class: "faint", colspan: 5 }, "No trades.")));
    return;
  }
  body.replaceChildren(...trades.slice(0, 5).map((t) => h("tr", {
    title: `#${t.id} · ${t.strategy} · held ${fmtDuration(t.holding_seconds)} · exit ${t.exit_reason}`,
  },
    h("td", { class: "sym" }, splitSymbol(t.symbol).pair,
      h("span", { class: `trade-side side-${t.side}` }, (t.side || "").toUpperCase())),
    h("td", { class: "muted nowrap" }, fmtDateTime(t.closed_at).slice(5)),
    h("td", { class: `num ${signClass(t.pnl)}` }, fmtMoney(t.pnl)),
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

// --- live wiring --------------------------------------------------------------------------

const handlers = {
  "health.updated": applyHealth,
  "position.opened": (p) => loadPosition(p.id),
  "position.state_changed": applyStateChange,
  "position.closed": (p) => { positions.delete(p.id ?? p.position_id); renderPositions(); },
  "alert.raised": (p) => applyAlert(p),
  "alert.resolved": (p) => applyAlert(p, { resolved: true }),
  "alert.acknowledged": (p) => applyAlert(p),
  "trading.halted": renderHalt,
  "trading.resumed": renderHalt,
  "positions.marked": (p) => { if (applyMarks(positions, p)) renderPositions(); },
  "health.marked": (p) => { if (applyHealthMarks(positions, p)) renderPositions(); },
};

function start() {
  renderPositions();
  renderAlerts();
  renderHalt(state.halt);
  bindHaltControls(state.endpoints);
  for (const tab of document.querySelectorAll("#period-tabs button")) {
    tab.addEventListener("click", () => loadPerformance(tab.dataset.period));
  }
  loadPerformance(state.periods[0]);
  loadExecution();
  setInterval(loadExecution, 30000);
  startAccounts();
  setInterval(() => {
    tickClocks($("positions-body").rows, positions);
    renderNextTimeout();
  }, 1000);
  const live = new LiveChannel(state.endpoints.live, {
    onEvent: (event, payload) => handlers[event]?.(payload),
    onStatus: bindLiveStatus($("live-status")),
    onReconnect: () => Promise.all([reloadPositions(), reloadAlerts(), loadExecution()]),
  });
  live.start();
  window.liveChannel = live;
}

start();
