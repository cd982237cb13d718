// The live channel: one websocket to /ws/health/, reconnecting by itself with
// exponential backoff (0.5 s doubling to 30 s, with jitter) after any drop.
// Every message is {"event": name, "payload": ...}.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const PING_EVERY_MS = 25000;

export class LiveChannel {
  constructor(path, { onEvent, onStatus, onReconnect } = {}) {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    this.url = `${scheme}://${window.location.host}${path}`;
    this.onEvent = onEvent || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onReconnect = onReconnect || (() => {});
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.pinger = null;
    this.everConnected = false;
    this.stopped = false;
    this.opened = 0; // connections opened so far (the first one and every reconnect)
    this.reloading = false; // true while onReconnect's reload is in flight
  }

  start() {
    this.stopped = false;
    this.connect();
    window.addEventListener("online", () => this.connectSoon(0));
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.socket) this.socket.close();
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus("connecting", { attempt: this.attempt });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      const reconnected = this.everConnected;
      this.attempt = 0;
      this.everConnected = true;
      this.opened += 1;
      this.onStatus("open", {});
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ event: "ping", payload: Date.now() }), PING_EVERY_MS);
      // Events missed while disconnected are not replayed: the page reloads its data.
      if (reconnected) {
        this.reloading = true;
        Promise.resolve(this.onReconnect()).finally(() => { this.reloading = false; });
      }
    });
    socket.addEventListener("message", (msg) => {
      let data;
      try { data = JSON.parse(msg.data); } catch (err) { return; }
      if (data && typeof data.event === "string") this.onEvent(data.event, data.payload);
    });
    socket.addEventListener("close", (ev) => {
      clearInterval(this.pinger);
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (ev.code === 4401) { this.onStatus("denied", {}); return; }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.onStatus("waiting", { delay, attempt: this.attempt, until: Date.now() + delay });
    this.connectSoon(delay);
  }

  connectSoon(delay) {
    if (this.stopped || (this.socket && this.socket.readyState <= 1)) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }
}

/** Show the channel's state in the top bar's pill and on <body data-live-state>. */
export function bindLiveStatus(pill) {
  let countdown = null;
  const text = pill.querySelector(".text");
  return (state, info) => {
    clearInterval(countdown);
    document.body.dataset.liveState = state;
    pill.classList.remove("ok", "wait", "down");
    if (state === "open") {
      pill.classList.add("ok");
      text.textContent = "Live";
    } else if (state === "waiting") {
      pill.classList.add("wait");
      const tick = () => {
        const left = Math.max(0, Math.ceil((info.until - Date.now()) / 1000));
        text.textContent = `Reconnecting in ${left}s`;
      };
      tick();
      countdown = setInterval(tick, 500);
    } else if (state === "denied") {
      pill.classList.add("down");
      text.textContent = "Signed out";
    } else {
      pill.classList.add("wait");
      text.textContent = "Connecting…";
    }
  };
}
