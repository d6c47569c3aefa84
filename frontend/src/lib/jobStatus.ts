export const FLOW = ["queued", "offered", "accepted", "preparing", "running"] as const;
export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"]);

export const STATUS_TEXT: Record<string, string> = {
  queued: "Queued",
  offered: "Offered to a host",
  accepted: "Accepted",
  preparing: "Preparing (installing requirements)",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
  timed_out: "Stopped: the time limit was reached",
  budget_exhausted: "Stopped: the cost cap was reached",
  lost: "Attempt lost (the host went away)",
};

/** What the person is waiting for, while they wait. */
export const WAITING_TEXT: Record<string, string> = {
  queued: "Waiting for a host that fits…",
  offered: "Waiting for the host to accept…",
  accepted: "The host accepted; starting…",
  preparing: "Installing requirements; a fresh environment can take a minute…",
  running: "Running…",
};

export function isTerminal(status: string | undefined): boolean {
  return status !== undefined && TERMINAL.has(status);
}

export function statusLabel(status: string | undefined): string {
  if (!status) return "—";
  return STATUS_TEXT[status] ?? status.replace(/_/g, " ");
}

/** A shape beside the words, so that colour is never the only sign of a status. */
export const TONE_MARK: Record<ReturnType<typeof statusTone>, string> = { ok: "✓", bad: "✕", busy: "…", idle: "–" };

export const HOST_STATUS_TEXT: Record<string, string> = {
  online: "Online",
  busy: "Busy (running a job)",
  draining: "Draining (finishing its jobs, taking no new ones)",
  offline: "Offline",
};

export function statusTone(status: string | undefined): "ok" | "bad" | "busy" | "idle" {
  if (status === "succeeded") return "ok";
  if (status && ["failed", "timed_out", "budget_exhausted", "lost"].includes(status)) return "bad";
  if (status === "cancelled") return "idle";
  return "busy";
}

/** A reason that only repeats the status ("running", "installing requirements") adds nothing. */
export function reasonWorthShowing(status: string, reason: string | undefined): boolean {
  if (!reason) return false;
  const plain = (text: string) => text.toLowerCase().replace(/[^a-z]/g, "");
  const said = plain(statusLabel(status));
  return plain(reason) !== plain(status) && !said.includes(plain(reason));
}
