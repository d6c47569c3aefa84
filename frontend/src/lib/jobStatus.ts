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
  timed_out: "Timed out",
  budget_exhausted: "Stopped: cost cap reached",
  lost: "Attempt lost (host vanished)",
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
