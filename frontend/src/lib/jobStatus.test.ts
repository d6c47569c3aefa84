import { describe, expect, it } from "vitest";
import { reasonWorthShowing, statusLabel } from "./jobStatus";

describe("reasonWorthShowing", () => {
  it("hides reasons that only repeat the status", () => {
    expect(reasonWorthShowing("running", "running")).toBe(false);
    expect(reasonWorthShowing("preparing", "installing requirements")).toBe(false);
    expect(reasonWorthShowing("queued", "")).toBe(false);
  });

  it("shows reasons that say something", () => {
    expect(reasonWorthShowing("succeeded", "exit code 0")).toBe(true);
    expect(reasonWorthShowing("failed", "the host could not prepare the job")).toBe(true);
    expect(reasonWorthShowing("queued", "requeued: attempt 1 was lost")).toBe(true);
  });
});

describe("statuses in words", () => {
  it("says why a job stopped, not its code", () => {
    expect(statusLabel("budget_exhausted")).toBe("Stopped: the cost cap was reached");
    expect(statusLabel("timed_out")).toBe("Stopped: the time limit was reached");
    expect(statusLabel("some_new_status")).toBe("some new status");
  });
});
