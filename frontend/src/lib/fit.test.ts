import { describe, expect, it } from "vitest";
import type { HostListing } from "../api/types";
import { hostMisfits, whyNoneFits } from "./fit";

function host(overrides: Partial<HostListing>): HostListing {
  return {
    id: 1, name: "lab-1", status: "online", is_draining: false, is_accepting_jobs: true, is_available: true,
    max_job_cpus: 4, max_job_memory_mb: 4096, max_job_gpus: 0, max_job_timeout_seconds: 3600,
    ...overrides,
  } as HostListing;
}

const spec = { cpus: 1, memory_mb: 1024, gpus: 0, timeout_seconds: 600 };

describe("why no machine fits", () => {
  it("says nothing when one fits", () => {
    expect(whyNoneFits([host({})], spec)).toEqual([]);
  });

  it("names the limit that no machine meets", () => {
    const hosts = [host({}), host({ id: 2, name: "lab-2", max_job_cpus: 8, max_job_memory_mb: 8192 })];
    expect(whyNoneFits(hosts, { ...spec, cpus: 16 })).toEqual(["You asked for 16 cores; the most any machine takes per job is 8."]);
    expect(whyNoneFits(hosts, { ...spec, memory_mb: 16384, gpus: 1 })).toEqual([
      "You asked for 16 GB of memory; the most any machine gives a job is 8 GB.",
      "You asked for a GPU; no machine taking work now has one.",
    ]);
    expect(whyNoneFits(hosts, { ...spec, timeout_seconds: 7200 })).toEqual(["Your timeout is 2 h 0 min; the longest any machine allows is 1 h 0 min."]);
  });

  it("names the closest machine when the limits are met only by different machines", () => {
    const hosts = [host({ max_job_cpus: 8, max_job_memory_mb: 1024 }), host({ id: 2, name: "lab-2", max_job_cpus: 2, max_job_memory_mb: 8192 })];
    expect(whyNoneFits(hosts, { ...spec, cpus: 8, memory_mb: 8192 })).toEqual([
      "No single machine meets all of it; the closest, lab-1, allows at most 1 GB per job.",
    ]);
  });

  it("names the disk when no machine gives a job that much, counting the inputs", () => {
    // given hosts whose per-job disk is capped, or only their free disk is known
    const hosts = [host({ job_disk_mb: 4096, disk_free_mb: 100_000 }), host({ id: 2, name: "lab-2", job_disk_mb: null, disk_free_mb: 3000 })];
    // then the defaults (2.25 GB) fit, and 2 GB more of /work with 1.5 GB of inputs do not
    expect(whyNoneFits(hosts, spec)).toEqual([]);
    const big = { ...spec, disk: { work_mb: 3072, outputs_mb: 1024, tmp_mb: 256 }, inputs_bytes: 1536 * 1024 * 1024 };
    expect(whyNoneFits(hosts, big)).toEqual([
      "The job needs 5.8 GB of disk (/work, /outputs, /tmp and the inputs); the most any machine gives a job is 4 GB.",
    ]);
    expect(hostMisfits(hosts[1]!, big)).toEqual(["at most 2.9 GB of disk per job"]);
  });

  it("says when nothing is online or taking work", () => {
    expect(whyNoneFits([], spec)).toEqual(["No machine you may use is online right now."]);
    expect(whyNoneFits([host({ is_accepting_jobs: false })], spec)[0]).toMatch(/not taking work now/);
    expect(hostMisfits(host({ is_draining: true }), spec)).toEqual(["draining"]);
  });
});
