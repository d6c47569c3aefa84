interface Props {
  label: string;
  detail?: string;
}

/** An indeterminate progress indicator for long waits; announced politely. */
export function Busy({ label, detail }: Props) {
  return (
    <div className="busy" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      <span>
        {label}
        {detail && <small className="muted"> — {detail}</small>}
      </span>
    </div>
  );
}

export function Loading() {
  return <Busy label="Loading…" />;
}
