// Why no machine fits a job, from the catalog entries the Run page already has: which limit
// (cores, memory, GPUs, timeout, disk per job), or that no machine is taking work now.

import { DISK_DEFAULTS, type DiskLimits } from "../api/blobs";
import type { HostListing } from "../api/types";
import { jobDiskMb } from "./hosts";
import { formatDuration, formatMemory } from "./money";

export interface FitSpec {
  cpus: number;
  memory_mb: number;
  gpus: number;
  timeout_seconds: number;
  disk?: Partial<DiskLimits>;
  inputs_bytes?: number;
}

const MiB = 1024 * 1024;

/** The disk a job takes on its host, as placement counts it (marketplace/placement.py): its
 * three file systems and its inputs, rounded up to MB. */
export function diskNeededMb(spec: FitSpec): number {
  const size = (name: keyof DiskLimits) => spec.disk?.[name] ?? DISK_DEFAULTS[name];
  return size("work_mb") + size("outputs_mb") + size("tmp_mb") + Math.ceil((spec.inputs_bytes ?? 0) / MiB);
}

/** Whether the host gives a job too little disk; a listing without its disk is not held against it. */
function diskShort(host: HostListing, spec: FitSpec): boolean {
  const available = jobDiskMb(host);
  return available !== null && diskNeededMb(spec) > available;
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
  if (diskShort(host, spec)) why.push(`at most ${formatMemory(jobDiskMb(host))} of disk per job`);
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
  if (taking.every((h) => diskShort(h, spec))) {
    const mostDisk = Math.max(...taking.map((h) => jobDiskMb(h) ?? 0));
    reasons.push(
      `The job needs ${formatMemory(diskNeededMb(spec))} of disk (/work, /outputs, /tmp and the inputs); the most any machine gives a job is ${formatMemory(mostDisk)}.`,
    );
  }
  if (!reasons.length) {
    // Each limit is met by some machine, but not all by the same one: name the closest.
    const closest = [...taking].sort((a, b) => hostMisfits(a, spec).length - hostMisfits(b, spec).length)[0]!;
    reasons.push(`No single machine meets all of it; the closest, ${closest.name || `host #${closest.id}`}, allows ${hostMisfits(closest, spec).join(", ")}.`);
  }
  return reasons;
}
