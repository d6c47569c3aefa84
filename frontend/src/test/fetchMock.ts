import { vi } from "vitest";

export interface Call {
  method: string;
  url: string;
  headers: Headers;
  body: unknown;
}

type Handler = (call: Call) => Response | Promise<Response>;

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

/** Stubs global fetch with `routes` ("METHOD /path" -> handler); records every call. */
export function mockFetch(routes: Record<string, Handler>) {
  const calls: Call[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : null;
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url, "http://testserver");
    const method = (init?.method ?? request?.method ?? "GET").toUpperCase();
    const headers = new Headers(init?.headers ?? request?.headers);
    let body: unknown = init?.body ?? (request && request.body ? await request.clone().text() : null);
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        /* keep text */
      }
    }
    const call = { method, url: url.pathname + url.search, headers, body };
    calls.push(call);
    const handler = routes[`${method} ${url.pathname}`];
    if (init?.signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (!handler) return json(404, { error: { code: "not_found", message: `no mock for ${method} ${url.pathname}`, fields: {} } });
    return handler(call);
  });
  vi.stubGlobal("fetch", fn);
  return { calls, fn };
}
