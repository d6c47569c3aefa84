import { errorMessage } from "../api/errors";
import { fieldLabel } from "../api/errorText";

interface Props {
  message?: string | null;
  error?: unknown;
  details?: [string, string][];
  onDismiss?: () => void;
}

/** The general error banner: announced at once (role="alert"). */
export function ErrorBanner({ message, error, details, onDismiss }: Props) {
  const text = message ?? (error ? errorMessage(error) : null);
  if (!text) return null;
  return (
    <div className="banner banner-error" role="alert">
      <p>{text}</p>
      {details && details.length > 0 && (
        <ul>
          {details.map(([field, msg]) => (
            <li key={field}>
              {fieldLabel(field)}: {msg}
            </li>
          ))}
        </ul>
      )}
      {onDismiss && (
        <button type="button" className="link-button" onClick={onDismiss}>
          Dismiss
        </button>
      )}
    </div>
  );
}

export function Notice({ children }: { children: React.ReactNode }) {
  return (
    <div className="banner banner-info" role="status">
      {children}
    </div>
  );
}
