// One HTTP client for the whole app: same-origin session cookie + CSRF header, the API's error
// format turned into ApiError. `typed` is openapi-fetch over the generated schema (schema.d.ts);
// `request` is the untyped escape hatch used by endpoints.ts until an endpoint is in the schema.
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { ApiError, apiErrorFrom } from "./errors";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

export function readCookie(name: string): string | null {
  if (typeof document === "undefined") return null;
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

let csrfPromise: Promise<void> | null = null;

/** Make sure the csrftoken cookie exists (GET /api/v1/auth/csrf/ sets it). */
export async function ensureCsrf(): Promise<string | null> {
  const existing = readCookie("csrftoken");
  if (existing) return existing;
  csrfPromise ??= fetch("/api/v1/auth/csrf/", { credentials: "same-origin" })
    .then(() => undefined)
    .catch(() => undefined)
    .finally(() => {
      csrfPromise = null;
    });
  await csrfPromise;
  return readCookie("csrftoken");
}

const csrfMiddleware: Middleware = {
  async onRequest({ request }) {
    if (SAFE_METHODS.has(request.method.toUpperCase())) return request;
    const token = await ensureCsrf();
    if (token) request.headers.set("X-CSRFToken", token);
    return request;
  },
};

export const typed = createClient<paths>({
  // Request objects need an absolute URL; the API is always same-origin.
  baseUrl: typeof window !== "undefined" ? window.location.origin : "",
  credentials: "same-origin",
  // Looked up per call, so tests (and polyfills) can replace fetch after this module loads.
  fetch: (request: Request) => globalThis.fetch(request),
});
typed.use(csrfMiddleware);

/** Unwrap an openapi-fetch result: the data, or an ApiError in our format. */
export async function unwrap<T>(
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await pending;
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection.");
  }
  const { data, error, response } = result;
  if (!response.ok) throw apiErrorFrom(response.status, error);
  return data as T;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | null | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export function withQuery(path: string, query?: RequestOptions["query"]): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

/** Raw fetch with our cookies, CSRF and error handling. Returns the Response (ok only). */
export async function rawRequest(
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<Response> {
  const headers = new Headers(options.headers);
  headers.set("Accept", "application/json");
  let body: BodyInit | undefined;
  if (options.body instanceof FormData || options.body instanceof Blob) {
    body = options.body; // multipart: the caller's Content-Type (with its boundary) stands
  } else if (options.body !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(options.body);
  }
  if (!SAFE_METHODS.has(method.toUpperCase())) {
    const token = await ensureCsrf();
    if (token) headers.set("X-CSRFToken", token);
  }
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), {
      method,
      headers,
      body,
      credentials: "same-origin",
      signal: options.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection.");
  }
  if (!response.ok) {
    let parsed: unknown = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    throw apiErrorFrom(response.status, parsed);
  }
  return response;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await rawRequest(method, path, options);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("Content-Type") ?? "";
  if (type.includes("json")) return (await response.json()) as T;
  return (await response.text()) as unknown as T;
}
