import { groupStatusView, HOST_STATUS_TEXT, statusLabel, statusTone, taskStatusLabel, taskTone, TONE_MARK } from "../lib/jobStatus";

type Tone = ReturnType<typeof statusTone>;

/** Words first, a mark beside them, colour last: never colour alone. */
export function Badge({ tone, text }: { tone: Tone; text: string }) {
  return (
    <span className={`badge badge-${tone}`}>
      <span aria-hidden="true" className="badge-mark">
        {TONE_MARK[tone]}
      </span>{" "}
      {text}
    </span>
  );
}

export function StatusBadge({ status }: { status: string | undefined }) {
  return <Badge tone={statusTone(status)} text={statusLabel(status)} />;
}

export function HostStatusBadge({ status }: { status: string | undefined }) {
  const tone: Tone = status === "online" ? "ok" : status === "busy" ? "busy" : status === "draining" ? "idle" : "bad";
  return <Badge tone={tone} text={status ? (HOST_STATUS_TEXT[status] ?? status.replace(/_/g, " ")) : "Unknown"} />;
}

export function TaskStatusBadge({ status }: { status: string | undefined }) {
  return <Badge tone={taskTone(status)} text={taskStatusLabel(status)} />;
}

export function GroupStatusBadge({ status, counts }: { status: string | undefined; counts?: Record<string, number> }) {
  const view = groupStatusView(status, counts);
  return <Badge tone={view.tone} text={view.text} />;
}
