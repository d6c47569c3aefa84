import { act, render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { LogBuffer } from "../lib/logBuffer";
import { logsFetch } from "../api/endpoints";
import { mockFetch, json } from "../test/fetchMock";
import { LogView } from "./LogView";

describe("LogView", () => {
  it("fills a gap by fetching GET …/logs/?offset=N and shows the log in order", async () => {
    // given the server holds 3 lines; the socket delivers line 1, then line 3 (line 2 was lost)
    const { calls } = mockFetch({
      "GET /api/v1/jobs/7/logs/": (call) => {
        const offset = Number(new URL(call.url, "http://x").searchParams.get("offset"));
        const full = "line 1\nline 2\nline 3\n";
        return json(200, { offset, data: full.slice(offset), next_offset: full.length });
      },
    });
    const buffer = new LogBuffer((offset) => logsFetch(7, offset));
    render(<LogView buffer={buffer} />);
    // when
    await act(() => buffer.push(0, "line 1\n"));
    await act(() => buffer.push(14, "line 3\n"));
    // then
    expect(calls.map((c) => c.url)).toEqual(["/api/v1/jobs/7/logs/?offset=7"]);
    const log = screen.getByRole("log", { name: "Job log" });
    expect(log.textContent).toBe("line 1\nline 2\nline 3\n");
    expect(log).toHaveAttribute("aria-live", "polite");
  });

  it("reads a plain-text log body as bytes from the offset", async () => {
    mockFetch({
      "GET /api/v1/jobs/8/logs/": () => new Response("é tail", { status: 200, headers: { "Content-Type": "text/plain" } }),
    });
    const chunk = await logsFetch(8, 10);
    expect(chunk).toEqual({ offset: 10, data: "é tail", next_offset: 10 + 7 });
  });
});
