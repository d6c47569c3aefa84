import { describe, expect, it } from "vitest";
import type { UsageHistory } from "../api/types";
import type { UsageMessage } from "../lib/jobSocket";
import { usageSeries } from "./Job";

const stored: UsageHistory = {
  job_id: 1,
  attempts: [
    { attempt: 1, host_id: 2, host_name: "a", status: "lost", report_count: 1, samples: [{ at: "2026-05-01T10:00:00Z", cpu_seconds: 1, wall_seconds: 1, memory_current_mb: 9, memory_peak_mb: 9, cost_micros: 1 }] },
    {
      attempt: 2, host_id: 3, host_name: "b", status: "running", report_count: 2,
      samples: [
        { at: "2026-05-01T10:01:00Z", cpu_seconds: 1, wall_seconds: 5, memory_current_mb: 10, memory_peak_mb: 10, cost_micros: 5 },
        { at: "2026-05-01T10:01:05Z", cpu_seconds: 2, wall_seconds: 10, memory_current_mb: 11, memory_peak_mb: 11, cost_micros: 10 },
      ],
    },
    { attempt: 3, host_id: 3, host_name: "b", status: "accepted", report_count: 0, samples: [] },
  ],
  timeline: [],
};

describe("usageSeries", () => {
  it("starts from the latest attempt's stored samples and adds only newer live reports", () => {
    const at = (iso: string) => Date.parse(iso);
    const live: UsageMessage[] = [
      { kind: "usage", at: at("2026-05-01T10:01:05Z"), wall_seconds: 10, cost_micros: 10 },
      { kind: "usage", at: at("2026-05-01T10:01:10Z"), wall_seconds: 15, cost_micros: 15 },
    ];
    expect(usageSeries(stored, live).map((u) => u.wall_seconds)).toEqual([5, 10, 15]);
  });

  it("is the live reports alone before the history has loaded", () => {
    const live: UsageMessage[] = [{ kind: "usage", at: 1, wall_seconds: 3 }];
    expect(usageSeries(null, live)).toEqual(live);
  });
});
