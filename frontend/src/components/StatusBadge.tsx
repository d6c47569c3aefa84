import { statusLabel, statusTone } from "../lib/jobStatus";

export function StatusBadge({ status }: { status: string | undefined }) {
  return <span className={`badge badge-${statusTone(status)}`}>{statusLabel(status)}</span>;
}

export function HostStatusBadge({ status }: { status: string | undefined }) {
  const tone = status === "online" ? "ok" : status === "busy" ? "busy" : status === "draining" ? "idle" : "bad";
  return <span className={`badge badge-${tone}`}>{status ?? "unknown"}</span>;
}
