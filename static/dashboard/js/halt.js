// The trading-halt banner, the top-bar pill and (staff only) the halt/resume controls.

import { apiFetch, toast } from "./api.js";
import { fmtDateTime } from "./format.js";

const $ = (id) => document.getElementById(id);

export function renderHalt(halt) {
  const banner = $("halt-banner");
  banner.hidden = !halt.trading_halted;
  $("halt-text").textContent = halt.trading_halted
    ? `${halt.reason || "no reason given"} — by ${halt.halted_by || "unknown"}, ${fmtDateTime(halt.halted_at)}` : "";
  const pill = $("trading-status");
  pill.classList.toggle("halted", !!halt.trading_halted);
  pill.classList.toggle("ok", !halt.trading_halted);
  pill.querySelector(".text").textContent = halt.trading_halted ? "Trading halted" : "Trading active";
  const button = $("halt-button");
  if (button) button.hidden = !!halt.trading_halted;
}

/** Wire the halt dialog and the resume button; absent for non-staff users (not rendered). */
export function bindHaltControls(endpoints) {
  const dialog = $("halt-dialog");
  const button = $("halt-button");
  if (dialog && button) {
    button.addEventListener("click", () => {
      $("halt-error").textContent = "";
      $("halt-reason").value = "";
      dialog.showModal();
    });
    $("halt-cancel").addEventListener("click", () => dialog.close());
    $("halt-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = $("halt-reason").value.trim();
      if (!reason) { $("halt-error").textContent = "Give a reason: it is shown to every operator."; return; }
      $("halt-confirm").disabled = true;
      try {
        renderHalt(await apiFetch(endpoints.halt, { method: "POST", body: { reason } }));
        dialog.close();
        toast("Trading halted: new entries are refused.");
      } catch (err) {
        $("halt-error").textContent = err.message;
      } finally {
        $("halt-confirm").disabled = false;
      }
    });
  }
  $("resume-button")?.addEventListener("click", async () => {
    if (!window.confirm("Resume trading? New entries will be accepted again.")) return;
    try {
      renderHalt(await apiFetch(endpoints.resume, { method: "POST" }));
      toast("Trading resumed.");
    } catch (err) {
      toast(`Resume refused: ${err.message}`, { error: true });
    }
  });
}
