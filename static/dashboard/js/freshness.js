// Whether the figures on a page are current. While the live channel is down the page says
// so: everything greys out under a banner "stale since hh:mm:ss", the trading pill no longer
// claims to know the halt state, and after reconnecting everything is read again before the
// page counts as live. Relative times ("12s ago") tick once a second.

import { fmtTime, tickAgo } from "./format.js";

const $ = (id) => document.getElementById(id);

export class Freshness {
  /** ``reload`` re-reads everything the page shows (returns a promise). */
  constructor({ reload }) {
    this.reload = reload;
    this.staleSince = null;
    this.everOpen = false;
    this.retryAt = null;
    this.reloading = false;
    setInterval(() => { tickAgo(); this.renderBanner(); }, 1000);
  }

  /** Feed every status of the live channel (connecting, open, waiting, denied). */
  status(state, info = {}) {
    if (state === "open") {
      if (!this.everOpen) {
        this.everOpen = true;
        // Never connected until now: whatever happened since the page loaded is read again.
        if (this.staleSince === null) this.fresh(); else this.reloaded(this.reload());
        return;
      }
      this.retryAt = null;
      this.reloading = true;
      this.renderBanner();
      return; // fresh again once the reload after reconnecting is done (``reloaded``)
    }
    this.reloading = false;
    if (state === "waiting") this.retryAt = info.until || null;
    if (state === "connecting" && !this.everOpen && this.staleSince === null) return; // first paint
    this.stale();
  }

  /** The reload after a reconnect: fresh when it succeeded, still stale when it failed. */
  async reloaded(promise) {
    try {
      const results = await Promise.allSettled([promise]);
      if (results[0].status === "fulfilled") this.fresh();
    } catch (err) {
      this.stale();
    }
  }

  stale() {
    if (this.staleSince === null) this.staleSince = new Date();
    document.body.dataset.stale = "true";
    const pill = $("trading-status");
    if (pill) {
      pill.classList.remove("ok", "halted");
      pill.classList.add("unknown");
      pill.querySelector(".text").textContent = "Trading: unknown";
      pill.title = "Not known while the live channel is down: read again on reconnect";
    }
    this.renderBanner();
  }

  fresh() {
    this.staleSince = null;
    this.reloading = false;
    delete document.body.dataset.stale;
    $("trading-status")?.classList.remove("unknown");
    this.renderBanner();
  }

  renderBanner() {
    const banner = $("stale-banner");
    if (!banner) return;
    banner.hidden = this.staleSince === null;
    if (this.staleSince === null) return;
    let retry = "";
    if (this.reloading) retry = " · reconnected, reading everything again…";
    else if (this.retryAt) retry = ` · reconnecting in ${Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000))}s`;
    else retry = " · reconnecting…";
    $("stale-text").textContent = `Live updates lost: the figures below are stale since ${fmtTime(this.staleSince.toISOString())}${retry}`;
  }
}
