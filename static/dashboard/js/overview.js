// What a FreqUI user expects beside the report: the closed trades (paginated, filterable,
// CSV), profit per day / week / month, a summary per strategy, balances and exposure per account.
// Each panel renders from its API answer; the dashboard reloads them when a trade closes.

import { apiFetch } from "./api.js";
import {
  fmtAmount, fmtDateTime, fmtDuration, fmtPct, fmtPrice, fmtProfit, h, signClass, splitSymbol, toNumber,
} from "./format.js";

const $ = (id) => document.getElementById(id);
const PAGE = 20;

function emptyRow(colspan, text) {
  return h("tr", {}, h("td", { class: "faint", colspan }, text));
}

function failed(node, err) {
  node.replaceChildren(emptyRow(8, `Unavailable: ${err.message}`));
}

// --- closed trades ---------------------------------------------------------------------------

export class ClosedTrades {
  constructor(state) {
    this.state = state;
    this.offset = 0;
    this.count = 0;
    this.ticket = 0;
    const filters = $("trades-filters");
    const select = (name, label, options) => h("label", { class: "filter" }, h("span", {}, label),
      h("select", { name, onchange: () => { this.offset = 0; this.load(); } },
        h("option", { value: "" }, "all"), ...options.map((o) => h("option", { value: o }, o))));
    filters.replaceChildren(
      select("period", "Period", state.periods.filter((p) => p !== "ALL")),
      select("strategy", "Strategy", state.strategy_names),
      select("side", "Side", ["long", "short"]),
      select("exit_reason", "Exit", state.exit_reasons));
    $("trades-prev").addEventListener("click", () => { this.offset = Math.max(0, this.offset - PAGE); this.load(); });
    $("trades-next").addEventListener("click", () => { this.offset += PAGE; this.load(); });
  }

  filters() {
    const params = {};
    for (const field of $("trades-filters").querySelectorAll("select")) if (field.value) params[field.name] = field.value;
    return params;
  }

  async load() {
    const ticket = ++this.ticket;
    const params = this.filters();
    const url = new URL(this.state.endpoints.trades_export, window.location.origin);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    $("trades-csv").href = url.pathname + url.search;
    try {
      const page = await apiFetch(this.state.endpoints.trades, { params: { ...params, limit: PAGE, offset: this.offset } });
      if (ticket !== this.ticket) return;
      this.count = page.count;
      this.render(page.results);
    } catch (err) {
      if (ticket === this.ticket) failed($("trades-body"), err);
    }
  }

  render(trades) {
    const body = $("trades-body");
    const currencies = this.state.currencies.by_account || {};
    const common = this.state.currencies.common;
    body.replaceChildren(...(trades.length ? trades.map((t) => {
      const { pair } = splitSymbol(t.symbol);
      return h("tr", { dataset: { tradeId: String(t.id) } },
        h("td", { class: "sym" },
          t.position ? h("a", { href: `/positions/${t.position}/` }, pair) : pair,
          h("span", { class: `trade-side side-${t.side}` }, (t.side || "").toUpperCase())),
        h("td", { class: "nowrap muted", "data-label": "Closed" }, fmtDateTime(t.closed_at)),
        h("td", { class: "hide-phone", "data-label": "Strategy" }, t.strategy),
        h("td", { class: "num hide-phone", "data-label": "Entry" }, fmtPrice(t.entry_price)),
        h("td", { class: "num hide-phone", "data-label": "Exit" }, fmtPrice(t.exit_price)),
        h("td", { class: `num ${signClass(t.pnl)}`, "data-label": "PnL", "data-role": "pnl" },
          fmtProfit(t.pnl, t.pnl_percent, currencies[t.account] || common)),
        h("td", { class: "num", "data-label": "Held" }, fmtDuration(t.holding_seconds)),
        h("td", { "data-label": "Exit reason" }, t.exit_reason));
    }) : [emptyRow(8, "No closed trades match.")]));
    const first = this.count ? this.offset + 1 : 0;
    const last = Math.min(this.offset + PAGE, this.count);
    $("trades-range").textContent = `${first}–${last} of ${this.count}`;
    $("trades-prev").disabled = this.offset === 0;
    $("trades-next").disabled = this.offset + PAGE >= this.count;
  }
}

// --- profit per day / week / month --------------------------------------------------------------

const UNIT_LABEL = {
  day: (d) => d.toLocaleDateString("en-GB", { weekday: "short", day: "2-digit", month: "short" }),
  week: (d) => `week of ${d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" })}`,
  month: (d) => d.toLocaleDateString("en-GB", { month: "long", year: "numeric" }),
};

export class ProfitTable {
  constructor(state) {
    this.state = state;
    this.unit = "day";
    this.ticket = 0;
    for (const tab of document.querySelectorAll("#profit-units button")) {
      tab.addEventListener("click", () => { this.unit = tab.dataset.unit; this.load(); });
    }
  }

  async load() {
    const ticket = ++this.ticket;
    for (const tab of document.querySelectorAll("#profit-units button")) {
      tab.setAttribute("aria-selected", String(tab.dataset.unit === this.unit));
    }
    try {
      const table = await apiFetch(this.state.endpoints.profit, { params: { unit: this.unit, count: this.unit === "day" ? 7 : 6 } });
      if (ticket !== this.ticket) return;
      const label = UNIT_LABEL[this.unit];
      $("profit-currency").textContent = table.currency ? `(${table.currency})` : "";
      $("profit-body").replaceChildren(...table.rows.map((row) => h("tr", {},
        h("td", { class: "nowrap" }, label(new Date(row.start))),
        h("td", { class: "num muted" }, `${row.trades}`),
        h("td", { class: `num ${signClass(row.pnl)}` }, fmtAmount(row.pnl, "")),
        h("td", { class: `num ${signClass(row.pnl_percent)}` }, fmtPct(row.pnl_percent, { signed: true })))));
    } catch (err) {
      if (ticket === this.ticket) failed($("profit-body"), err);
    }
  }
}

// --- per strategy ----------------------------------------------------------------------------------

export async function loadStrategies(state, period) {
  try {
    const summary = await apiFetch(state.endpoints.strategies, { params: { period } });
    $("strategies-period").textContent = period;
    const rows = summary.strategies;
    $("strategies-body").replaceChildren(...(rows.length ? rows.map((r) => h("tr", {},
      h("td", { class: "sym" }, r.strategy, h("span", { class: "sub" }, `${r.account} · ${r.open_positions} open`)),
      h("td", { class: "num" }, `${r.trades}`, h("span", { class: "sub" }, r.win_rate === null ? "—" : fmtPct(r.win_rate, { ratio: true, digits: 0 }))),
      h("td", { class: `num ${signClass(r.pnl)}` }, fmtAmount(r.pnl, ""), h("span", { class: "unit" }, r.currency),
        h("span", { class: `sub ${signClass(r.return_percent)}` }, fmtPct(r.return_percent, { signed: true }))))) : [emptyRow(3, "No trades in this period.")]));
  } catch (err) {
    failed($("strategies-body"), err);
  }
}

