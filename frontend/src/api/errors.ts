// The API's error format: {"error": {"code", "message", "fields"}} (API.md).

export type FieldErrors = Record<string, string>;

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: FieldErrors;

  constructor(status: number, code: string, message: string, fields: FieldErrors = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

/** DRF nests field errors as lists and dicts; flatten them to "a.b" -> "first message". */
export function flattenFields(raw: unknown, prefix = ""): FieldErrors {
  const out: FieldErrors = {};
  if (raw === null || raw === undefined) return out;
  if (typeof raw === "string") {
    if (prefix) out[prefix] = raw;
    return out;
  }
  if (Array.isArray(raw)) {
    if (raw.every((item) => typeof item === "string")) {
      if (prefix && raw.length) out[prefix] = (raw as string[]).join(" ");
      return out;
    }
    raw.forEach((item, index) => {
      Object.assign(out, flattenFields(item, prefix ? `${prefix}.${index}` : String(index)));
    });
    return out;
  }
  if (typeof raw === "object") {
    for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
      Object.assign(out, flattenFields(value, prefix ? `${prefix}.${key}` : key));
    }
  }
  return out;
}

/** Build an ApiError from any response body (JSON in our format, or anything else). */
export function apiErrorFrom(status: number, body: unknown): ApiError {
  if (body && typeof body === "object" && "error" in body) {
    const error = (body as { error: unknown }).error;
    if (error && typeof error === "object") {
      const e = error as { code?: unknown; message?: unknown; fields?: unknown };
      return new ApiError(
        status,
        typeof e.code === "string" ? e.code : `http_${status}`,
        typeof e.message === "string" ? e.message : `Request failed (${status})`,
        flattenFields(e.fields),
      );
    }
  }
  const fallback: Record<number, string> = {
    401: "Please log in.",
    403: "You are not allowed to do that.",
    404: "Not found.",
    413: "That is too large.",
    429: "Too many requests; wait a moment and try again.",
    502: "The server is unavailable; try again shortly.",
    503: "The server is unavailable; try again shortly.",
  };
  return new ApiError(status, `http_${status}`, fallback[status] ?? `Request failed (${status}).`);
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

export function isUnauthenticated(err: unknown): boolean {
  return (
    err instanceof ApiError &&
    (err.status === 401 ||
      (err.status === 403 && (err.code === "not_authenticated" || err.code === "authentication_failed")))
  );
}
