import type { JobEvent } from "../api/types";
import { FLOW, isTerminal, reasonWorthShowing, statusLabel } from "../lib/jobStatus";
import { formatDateTime } from "../lib/money";

interface Props {
  status: string;
  reason?: string;
  attempt?: number;
  events: JobEvent[];
}

/** The job's path so far (with reasons), then the steps still ahead. */
export function StatusTimeline({ status, reason, attempt, events }: Props) {
  const seen = events.map((e) => e.status);
  const currentIndex = FLOW.indexOf(status as (typeof FLOW)[number]);
  const ahead = isTerminal(status) ? [] : FLOW.filter((s, i) => i > currentIndex && !seen.includes(s));
  const shown = events.length ? events : [{ status, reason }];
  return (
    <div>
      <ol className="timeline" aria-label="Status timeline">
        {shown.map((event, i) => {
          const isCurrent = i === shown.length - 1;
          const why = event.reason && reasonWorthShowing(event.status, event.reason) ? event.reason : undefined;
          const when = event.at;
          return (
            <li key={`${event.status}-${event.attempt ?? ""}-${i}`} className={`done${isCurrent ? " current" : ""}`} aria-current={isCurrent ? "step" : undefined}>
              <strong>{statusLabel(event.status)}</strong>
              {event.attempt !== undefined && event.attempt > 1 && <span className="muted"> (attempt {event.attempt})</span>}
              {when && <span className="muted small"> · {formatDateTime(when)}</span>}
              {why && <div className="reason">{why}</div>}
            </li>
          );
        })}
        {ahead.map((s) => (
          <li key={s} className="ahead">
            {statusLabel(s)}
          </li>
        ))}
      </ol>
      {reason && !shown.some((e) => e.reason === reason) && (
        <p className="reason">
          Reason: {reason}
          {attempt && attempt > 1 ? ` (attempt ${attempt})` : ""}
        </p>
      )}
    </div>
  );
}
