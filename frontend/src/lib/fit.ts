// Why no machine fits a job, from the catalog entries the Run page already has: which limit
// (cores, memory, GPUs, timeout per job), or that no machine is taking work now.

import type { HostListing } from "../api/types";
import { formatDuration, formatMemory } from "./money";

export interface FitSpec {
  cpus: number;
  memory_mb: number;
  gpus: number;
  timeout_seconds: number;
}

/** What stops this host from taking the job, in words; empty when it fits. */
export function hostMisfits(host: HostListing, spec: FitSpec): string[] {
  const why: string[] = [];
  if (host.status === "offline") why.push("offline");
  else if (host.is_draining) why.push("draining");
  else if (!host.is_accepting_jobs) why.push("not taking work now");
  if (spec.cpus > host.max_job_cpus) why.push(`at most ${host.max_job_cpus} cores per job`);
  if (spec.memory_mb > host.max_job_memory_mb) why.push(`at most ${formatMemory(host.max_job_memory_mb)} per job`);
  if (spec.gpus > host.max_job_gpus) why.push(host.max_job_gpus ? `at most ${host.max_job_gpus} GPUs per job` : "no GPU");
  if (spec.timeout_seconds > host.max_job_timeout_seconds) why.push(`a timeout of at most ${formatDuration(host.max_job_timeout_seconds)}`);
  return why;
}

/** Sentences saying why none of `hosts` fits `spec` (empty when one does). */
export function whyNoneFits(hosts: HostListing[], spec: FitSpec): string[] {
  if (!hosts.length) return ["No machine you may use is online right now."];
  if (hosts.some((h) => hostMisfits(h, spec).length === 0)) return [];
  const taking = hosts.filter((h) => h.status !== "offline" && !h.is_draining && h.is_accepting_jobs);
  const reasons: string[] = [];
  if (!taking.length) {
    reasons.push(`${hosts.length === 1 ? "The one machine online is" : `All ${hosts.length} machines online are`} not taking work now (outside their hours, busy, or draining).`);
    return reasons;
  }
  const most = <K extends keyof HostListing>(key: K) => Math.max(...taking.map((h) => Number(h[key])));
  if (spec.cpus > most("max_job_cpus")) reasons.push(`You asked for ${spec.cpus} cores; the most any machine takes per job is ${most("max_job_cpus")}.`);
  if (spec.memory_mb > most("max_job_memory_mb"))
    reasons.push(`You asked for ${formatMemory(spec.memory_mb)} of memory; the most any machine gives a job is ${formatMemory(most("max_job_memory_mb"))}.`);
  if (spec.gpus > most("max_job_gpus"))
    reasons.push(most("max_job_gpus") ? `You asked for ${spec.gpus} GPUs; the most any machine gives a job is ${most("max_job_gpus")}.` : "You asked for a GPU; no machine taking work now has one.");
  if (spec.timeout_seconds > most("max_job_timeout_seconds"))
    reasons.push(`Your timeout is ${formatDuration(spec.timeout_seconds)}; the longest any machine allows is ${formatDuration(most("max_job_timeout_seconds"))}.`);
  if (!reasons.length) {
    // Each limit is met by some machine, but not all by the same one: name the closest.
    const closest = [...taking].sort((a, b) => hostMisfits(a, spec).length - hostMisfits(b, spec).length)[0]!;
    reasons.push(`No single machine meets all of it; the closest, ${closest.name || `host #${closest.id}`}, allows ${hostMisfits(closest, spec).join(", ")}.`);
  }
  return reasons;
}
