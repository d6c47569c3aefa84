import type { Host } from "../api/types";
import { formatCredits, formatPercent } from "./money";

export function reliabilityOf(host: Host): {
  score: number;
  uptime: number;
  finished: number;
  lost: number;
} {
  // The API gives basis points (10000 = 100 %).
  return {
    score: host.reliability_bps / 10_000,
    uptime: host.uptime_bps / 10_000,
    finished: host.jobs_finished,
    lost: host.jobs_lost,
  };
}

export function reliabilityText(host: Host): string {
  const { score, uptime, finished, lost } = reliabilityOf(host);
  return `${formatPercent(score)} reliable, ${formatPercent(uptime)} uptime, ${finished} finished / ${lost} lost`;
}

/** The disk one job may take on the host (MB): its per-job cap, else all its free disk; null
 * when the listing does not say. */
export function jobDiskMb(host: Pick<Host, "job_disk_mb" | "disk_free_mb">): number | null {
  const mb = host.job_disk_mb ?? host.disk_free_mb;
  return typeof mb === "number" ? mb : null;
}

export function gpuText(host: Host): string {
  const gpus = host.gpus ?? [];
  if (gpus.length) {
    return gpus.map((g) => `${g.model}${g.memory_mb ? ` (${Math.round(g.memory_mb / 1024)} GB)` : ""}`).join(", ");
  }
  return host.gpu_count ? `${host.gpu_count} GPU` : "none";
}

export function ratesText(host: Host): string {
  const parts = [`${formatCredits(host.cpu_core_hour_micros)}/core-h`, `${formatCredits(host.memory_gb_hour_micros)}/GB-h`];
  if ((host.gpu_count ?? host.gpus?.length ?? 0) > 0 || host.gpu_hour_micros) parts.push(`${formatCredits(host.gpu_hour_micros)}/GPU-h`);
  return parts.join(" · ");
}

export const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

export function availabilityText(host: Host): string {
  const policy = host.availability_policy;
  if (!policy) {
    // The catalog shows whether the host takes work now, not the owner's policy itself.
    if (host.is_draining) return "Draining: finishing its jobs, taking no new ones.";
    return host.is_available ? "Available now under its owner's policy." : "Not available now (its owner's policy).";
  }
  const parts: string[] = [];
  if (policy.windows?.length) {
    parts.push(
      policy.windows
        .map((w) => `${w.days.map((d) => DAYS[d] ?? d).join(",")} ${w.start}–${w.end}`)
        .join("; ") + (policy.timezone ? ` (${policy.timezone})` : ""),
    );
  } else {
    parts.push("any time");
  }
  if (policy.idle_minutes) parts.push(`after ${policy.idle_minutes} min without keyboard/mouse input`);
  if (policy.max_load !== null && policy.max_load !== undefined) parts.push(`while other processes use under ${policy.max_load} % CPU`);
  return parts.join(", ");
}

/** The `cursor` a catalog `next`/`previous` link carries ("" for a link to the first page). */
export function cursorOf(link: string): string {
  return new URL(link, "http://localhost").searchParams.get("cursor") ?? "";
}

/** "12 machines match." — or, past the count's cap (`count_is_capped`), "More than 1,000 machines match." */
export function matchText(count: number, capped: boolean): string {
  const n = count.toLocaleString("en-US");
  if (capped) return `More than ${n} machines match.`;
  return `${n} machine${count === 1 ? "" : "s"} match${count === 1 ? "es" : ""}.`;
}
