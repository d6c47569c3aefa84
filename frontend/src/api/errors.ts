// The API's error format: {"error": {"code", "message", "fields"}} (docs/api.md). An ApiError's
// `message` is the sentence a person reads (errorText.ts); the server's own text is `serverMessage`.

import { fieldSentence, sentenceFor, STATUS_SENTENCES } from "./errorText";

export type FieldErrors = Record<string, string>;

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: FieldErrors;
  readonly serverMessage: string;

  constructor(status: number, code: string, message: string, fields: FieldErrors = {}, serverMessage = message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.serverMessage = serverMessage;
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
      const code = typeof e.code === "string" ? e.code : `http_${status}`;
      const said = typeof e.message === "string" ? e.message : "";
      const raw = flattenFields(e.fields);
      const fields: FieldErrors = {};
      for (const [key, message] of Object.entries(raw)) fields[key] = fieldSentence(key, message, code);
      return new ApiError(status, code, sentenceFor(code, status, said, raw), fields, said);
    }
  }
  const sentence = STATUS_SENTENCES[status] ?? `The request failed (status ${status}).`;
  return new ApiError(status, `http_${status}`, sentence);
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
