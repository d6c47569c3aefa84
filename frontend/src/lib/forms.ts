import { useCallback, useState } from "react";
import { ApiError, errorMessage } from "../api/errors";

export interface FormErrors {
  /** The error shown next to `field`, if the API named that field. */
  fieldError: (field: string) => string | undefined;
  /** What belongs in the general banner: the message when no shown field explains it. */
  banner: string | null;
  /** Field errors for fields this form does not show (listed in the banner). */
  otherFields: [string, string][];
  set: (err: unknown) => void;
  clear: () => void;
  error: unknown;
}

/**
 * Routes an API error to the fields the form shows (`known`) and the banner. A field error
 * whose key is "files.0.path" (or "inputs[0].sha256") is shown on "files" ("inputs") when only
 * that field is known.
 */
export function useFormErrors(known: readonly string[]): FormErrors {
  const [error, setError] = useState<unknown>(null);
  const fields = error instanceof ApiError ? error.fields : {};

  const ownerOf = (key: string): string | undefined =>
    known.find((name) => key === name || key.startsWith(`${name}.`) || key.startsWith(`${name}[`));

  const fieldError = (field: string): string | undefined => {
    const messages = Object.entries(fields)
      .filter(([key]) => ownerOf(key) === field)
      .map(([, message]) => message);
    return messages.length ? messages.join(" ") : undefined;
  };

  const otherFields = Object.entries(fields).filter(([key]) => !ownerOf(key));
  const shownSomewhere = Object.keys(fields).some((key) => ownerOf(key));
  const banner = error === null ? null : shownSomewhere && !otherFields.length ? null : errorMessage(error);

  const set = useCallback((err: unknown) => setError(err), []);
  const clear = useCallback(() => setError(null), []);
  return { fieldError, banner, otherFields, set, clear, error };
}
