// JSON calls to the platform API with the session cookie and Django's CSRF token.

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super(ApiError.describe(status, body));
    this.status = status;
    this.body = body;
  }

  static describe(status, body) {
    if (body && typeof body === "object") {
      if (body.detail) return String(body.detail);
      const fields = Object.entries(body).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`);
      if (fields.length) return fields.join("; ");
    }
    return `HTTP ${status}`;
  }
}

export async function apiFetch(url, { method = "GET", body, params, headers = {} } = {}) {
  const target = new URL(url, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) target.searchParams.set(k, v);
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (method !== "GET") {
    init.headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const response = await fetch(target, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) {
    data = { detail: `HTTP ${response.status} ${response.statusText}`.trim() };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A small toast at the bottom right (errors stay longer). */
export function toast(message, { error = false } = {}) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const node = document.createElement("div");
  node.className = error ? "toast error" : "toast";
  node.setAttribute("role", error ? "alert" : "status");
  node.textContent = message;
  box.append(node);
  setTimeout(() => node.remove(), error ? 8000 : 4000);
}
