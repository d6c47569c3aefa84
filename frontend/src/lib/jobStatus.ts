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

// --- job groups and their tasks (docs/jobs.md "Job groups") -------------------------------

/** A group's task statuses in the order the page lists them: the live ones, then how they ended. */
export const TASK_STATUSES = ["pending", "running", "succeeded", "failed", "timed_out", "budget_exhausted", "cancelled", "skipped"] as const;

export const TASK_STATUS_TEXT: Record<string, string> = {
  ...STATUS_TEXT,
  pending: "Waiting to start",
  skipped: "Not started (skipped)",
};

/** The few words a task's tile has room for; the full words are in its title and the filter. */
export const TASK_SHORT_TEXT: Record<string, string> = {
  pending: "Waiting",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  timed_out: "Timed out",
  budget_exhausted: "Cap reached",
  cancelled: "Cancelled",
  skipped: "Not started",
};

export function taskStatusLabel(status: string | undefined): string {
  if (!status) return "—";
  return TASK_STATUS_TEXT[status] ?? status.replace(/_/g, " ");
}

/** A task's tone: as its job's, except that a task waiting to start is idle, not busy. */
export function taskTone(status: string | undefined): ReturnType<typeof statusTone> {
  if (status === "pending" || status === "skipped") return "idle";
  return statusTone(status);
}

export const GROUP_ENDED = new Set(["finished", "cancelled"]);

export function isGroupEnded(status: string | undefined): boolean {
  return status !== undefined && GROUP_ENDED.has(status);
}

/** A group's status in words and its tone; "finished" says when not every task succeeded. */
export function groupStatusView(status: string | undefined, counts?: Record<string, number>): { text: string; tone: ReturnType<typeof statusTone> } {
  if (status === "running") return { text: "Running", tone: "busy" };
  if (status === "cancelled") return { text: "Cancelled", tone: "idle" };
  if (status === "finished") {
    const notSucceeded = counts ? Object.entries(counts).some(([key, n]) => key !== "succeeded" && n > 0) : false;
    return notSucceeded ? { text: "Finished (not every task succeeded)", tone: "bad" } : { text: "Finished", tone: "ok" };
  }
  return { text: status ? status.replace(/_/g, " ") : "—", tone: "busy" };
}
