// A job group's live socket /ws/job-groups/{id}/: `group.progress` (its status, the counts by
// task status, the cost so far) first on connect and after every task's settlement. A doorbell
// like the job's: pushes may be dropped, so the page reads the group over HTTP after each
// (re)connect and each push, and the socket reconnects as the job's does (lib/jobSocket.ts).
import type { GroupStatus, TaskCounts } from "../api/types";
import { liveSocketOpen, type LiveSocketOptions } from "./jobSocket";

export interface GroupProgress {
  group_id: number;
  status: GroupStatus;
  status_reason: string;
  count: number;
  counts: TaskCounts;
  cost_micros: number;
  open_tasks: number;
  cancel_requested: boolean;
}

const COUNT_KEYS: (keyof TaskCounts)[] = ["pending", "running", "succeeded", "failed", "cancelled", "timed_out", "budget_exhausted", "skipped"];

function countsFrom(raw: unknown): TaskCounts | null {
  if (!raw || typeof raw !== "object") return null;
  const given = raw as Record<string, unknown>;
  const counts = {} as TaskCounts;
  for (const key of COUNT_KEYS) counts[key] = typeof given[key] === "number" ? given[key] : 0;
  return counts;
}

/** A progress message, as `{type: "group.progress", ...fields}` or the envelope `{type, data}`;
 * anything else (or a message without its counts) is ignored. */
export function parseGroupMessage(raw: string): GroupProgress[] {
  let message: unknown;
  try {
    message = JSON.parse(raw);
  } catch {
    return [];
  }
  if (!message || typeof message !== "object") return [];
  const outer = message as Record<string, unknown>;
  const body = outer.data && typeof outer.data === "object" && !Array.isArray(outer.data) ? { ...outer, ...(outer.data as Record<string, unknown>) } : outer;
  const counts = countsFrom(body.counts);
  if (String(outer.type ?? "").replace(/^group\./, "") !== "progress" || !counts || typeof body.status !== "string") return [];
  const num = (value: unknown, fallback = 0) => (typeof value === "number" ? value : fallback);
  return [
    {
      group_id: num(body.group_id),
      status: body.status as GroupStatus,
      status_reason: typeof body.status_reason === "string" ? body.status_reason : "",
      count: num(body.count, COUNT_KEYS.reduce((sum, key) => sum + counts[key], 0)),
      counts,
      cost_micros: num(body.cost_micros),
      open_tasks: num(body.open_tasks),
      cancel_requested: body.cancel_requested === true,
    },
  ];
}

/** The group's socket, /ws/job-groups/{id}/ (the owner's only). */
export function groupSocketOpen(groupId: number, options: LiveSocketOptions<GroupProgress>): { close: () => void } {
  return liveSocketOpen(`/ws/job-groups/${groupId}/`, parseGroupMessage, options);
}
