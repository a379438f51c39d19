// REST calls to /api/aiim with the signed-in user's token (docs/API.md).

const TOKEN_KEY = "aiim.token";

export class APIError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** `api("GET", "/conversations")`: the JSON answer, or an APIError with the error code. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/aiim${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const json = await response.json().catch(() => null);
  if (!response.ok) {
    throw new APIError(response.status, json?.error?.code ?? "internal", json?.error?.message);
  }
  return json;
}

/** Service info (`GET /` as JSON): whether the development sign-in is on. */
export async function serviceInfo() {
  const response = await fetch("/", { headers: { Accept: "application/json" } });
  return response.ok ? response.json() : {};
}

export async function devLogin(user) {
  return api("POST", "/dev/login", { user });
}

/** The user id inside a JWT (its `sub`); API keys are opaque, so null. */
export function tokenUser(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json).sub ?? null;
  } catch {
    return null;
  }
}
