import type { Host } from "../api/types";
import { formatCredits, formatPercent } from "./money";

export function reliabilityOf(host: Host): {
  score: number | null;
  uptime: number | null;
  finished: number | null;
  lost: number | null;
} {
  const r = host.reliability;
  const score = typeof host.reliability_bps === "number" ? host.reliability_bps / 10_000 : null;
  if (typeof host.uptime_bps === "number") {
    return { score, uptime: host.uptime_bps / 10_000, finished: host.jobs_finished ?? null, lost: host.jobs_lost ?? null };
  }
  if (typeof r === "number") return { score, uptime: r, finished: host.jobs_finished ?? null, lost: host.jobs_lost ?? null };
  return {
    score,
    uptime: r?.uptime_ratio ?? host.uptime_ratio ?? null,
    finished: r?.jobs_finished ?? host.jobs_finished ?? null,
    lost: r?.jobs_lost ?? host.jobs_lost ?? null,
  };
}

export function reliabilityText(host: Host): string {
  const { score, uptime, finished, lost } = reliabilityOf(host);
  const parts = [score !== null ? `${formatPercent(score)} reliable` : null, uptime !== null ? `${formatPercent(uptime)} uptime` : null];
  if (finished !== null || lost !== null) parts.push(`${finished ?? 0} finished / ${lost ?? 0} lost`);
  return parts.filter(Boolean).join(", ") || "—";
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
  const policy = host.availability_policy ?? {};
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
