// The portfolio guard panel: each scope's trading state, its limits as bars, the trip
// history and the latest refused orders; staff re-arm a tripped scope or change a
// state, always with a reason. Data: GET /api/guard/ (first paint from the page).

import { apiFetch, toast } from "./api.js";
import { fmtAgo, fmtDateTime, fmtMoney, h, toNumber } from "./format.js";

const $ = (id) => document.getElementById(id);
const SHOWN_KINDS = new Set(["global", "account"]);

function num(value, digits = 2) {
  const n = toNumber(value);
  return n === null ? "—" : n.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function limitBar(limit) {
  const used = Math.min(Math.max(toNumber(limit.used_percent) ?? 0, 0), 100);
  const level = used >= 100 ? "crit" : used >= 80 ? "warn" : "ok";
  const unit = limit.unit === "quote" ? "" : ` ${limit.unit}`;
  const value = limit.value === null ? limit.detail : `${num(limit.value)} of ${num(limit.limit)}${unit}`;
  return h("div", { class: "guard-limit", dataset: { key: limit.key } },
    h("div", { class: "guard-limit-head" },
      h("span", {}, limit.key),
      h("span", { class: "faint" }, value + (limit.detail && limit.value !== null ? ` · ${limit.detail}` : ""))),
    h("div", { class: `guard-bar ${level}`, title: `${num(limit.used_percent)} % used` },
      h("i", { style: `width:${used}%` })));
}

function scopeItem(scope, staff, onChange) {
  const limits = scope.limits.filter((l) => l.limit !== null);
  const equity = scope.equity === null ? null : h("div", { class: "faint small" },
    `equity ${fmtMoney(scope.equity, { signed: false })}`,
    scope.marks_age_seconds === null ? " · no marks yet" : ` · marks ${fmtAgo(scope.marks_as_of)}`,
    scope.unmarked_positions ? ` · ${scope.unmarked_positions} unmarked` : "",
    scope.equity_at ? ` · counted ${fmtAgo(scope.equity_at)}` : "");
  const trip = scope.trip && h("div", { class: "guard-trip" },
    h("strong", {}, `TRIPPED ${scope.trip.code}`), " ", scope.trip.message);
  const buttons = staff ? h("div", { class: "guard-actions" },
    scope.trip ? h("button", { class: "btn small primary", type: "button",
      onclick: () => onChange(scope, "ACTIVE") }, "Re-arm…") : null,
    h("button", { class: "btn small", type: "button", onclick: () => onChange(scope, null) },
      "Change state…")) : null;
  return h("li", { class: `guard-scope state-${scope.state}`, dataset: { scope: scope.scope } },
    h("div", { class: "head" },
      h("span", { class: "guard-name" }, scope.scope),
      h("span", { class: `badge guard-${scope.state}` }, scope.state),
      h("span", { class: "when" }, scope.by ? `by ${scope.by} · ${fmtAgo(scope.since)}` : "")),
    scope.reason && !scope.trip ? h("div", { class: "msg" }, scope.reason) : null,
    trip, equity,
    limits.length ? h("div", { class: "guard-limits" }, ...limits.map(limitBar))
      : h("div", { class: "faint small" }, "no limits set"),
    buttons);
}

function tripRow(trip) {
  const rearmed = trip.rearmed_at ? ` · re-armed by ${trip.rearmed_by}: ${trip.rearm_reason}` : " · open";
  return h("tr", { title: trip.message + rearmed },
    h("td", { class: "muted nowrap" }, fmtDateTime(trip.tripped_at).slice(5)),
    h("td", { class: "guard-wrap" }, trip.scope),
    h("td", {}, h("span", { class: `badge ${trip.rearmed_at ? "CLOSED" : "CRITICAL"}` }, trip.code)));
}

function refusalRow(refusal) {
  return h("tr", { title: refusal.message },
    h("td", { class: "muted nowrap" }, fmtDateTime(refusal.created_at).slice(5)),
    h("td", {}, h("span", { class: "badge WARNING" }, refusal.reason_code)),
    h("td", { class: "small" }, `${refusal.side} ${num(refusal.quantity, 6)} ${refusal.symbol}`));
}

export class GuardPanel {
  constructor(endpoints, { staff, initial }) {
    this.endpoints = endpoints;
    this.staff = staff;
    this.overview = initial;
    this.target = null;
    this.bindDialog();
  }

  render(overview = this.overview) {
    this.overview = overview;
    const scopes = overview.scopes.filter((s) => SHOWN_KINDS.has(s.kind) || s.state !== "ACTIVE"
      || s.limits.some((l) => l.limit !== null));
    $("guard-scopes").replaceChildren(...scopes.map((s) => scopeItem(s, this.staff, (scope, state) => this.open(scope, state))));
    const tripped = overview.scopes.filter((s) => s.trip).length;
    $("guard-count").textContent = tripped ? `(${tripped} tripped)` : "";
    const trips = overview.recent_trips || [];
    $("guard-trips").querySelector("tbody").replaceChildren(...(trips.length ? trips.slice(0, 10).map(tripRow)
      : [h("tr", {}, h("td", { class: "faint", colspan: 3 }, "No trips."))]));
    const refusals = overview.recent_refusals || [];
    $("guard-refusals").querySelector("tbody").replaceChildren(...(refusals.length ? refusals.slice(0, 10).map(refusalRow)
      : [h("tr", {}, h("td", { class: "faint", colspan: 3 }, "No refused orders."))]));
  }

  async reload() {
    try {
      this.render(await apiFetch(this.endpoints.guard));
    } catch (err) {
      toast(`Guard: ${err.message}`, { error: true });
    }
  }

  open(scope, state) {
    const dialog = $("guard-dialog");
    if (!dialog) return;
    this.target = scope;
    $("guard-dialog-scope").textContent = scope.scope;
    $("guard-state").value = state || scope.state;
    $("guard-reason").value = "";
    $("guard-error").textContent = "";
    dialog.showModal();
  }

  bindDialog() {
    const dialog = $("guard-dialog");
    if (!dialog) return;
    $("guard-cancel").addEventListener("click", () => dialog.close());
    $("guard-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = $("guard-reason").value.trim();
      if (!reason) { $("guard-error").textContent = "Give a reason: it is shown to every operator and audited."; return; }
      $("guard-confirm").disabled = true;
      try {
        const scope = await apiFetch(this.endpoints.guard_state, {
          method: "POST", body: { scope: this.target.scope, state: $("guard-state").value, reason } });
        dialog.close();
        toast(`${scope.scope} is ${scope.state}.`);
        this.reload();
      } catch (err) {
        $("guard-error").textContent = err.message;
      } finally {
        $("guard-confirm").disabled = false;
      }
    });
  }
}
