import { describe, expect, it } from "vitest";
import { reasonWorthShowing } from "./jobStatus";

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
