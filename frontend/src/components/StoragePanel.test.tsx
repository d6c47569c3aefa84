import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { json, mockFetch } from "../test/fetchMock";
import { StoragePanel } from "./StoragePanel";

const A = "a".repeat(64);
const B = "b".repeat(64);
const GiB = 1024 ** 3;

describe("the storage panel", () => {
  it("shows the quota and the stored files, deletes one, and says why another can't go", async () => {
    // given
    let held = [
      { sha256: A, size: GiB, name: "train.csv", origin: "upload", created_at: "2026-05-01T10:00:00Z", last_used_at: "2026-05-02T10:00:00Z" },
      { sha256: B, size: 2048, name: "result.pt", origin: "output", created_at: "2026-05-01T10:00:00Z", last_used_at: null },
    ];
    const { calls } = mockFetch({
      "GET /api/v1/blobs/quota/": () => json(200, { used_bytes: held.reduce((a, b) => a + b.size, 0), limit_bytes: 5 * GiB, uploading_bytes: 0 }),
      "GET /api/v1/blobs/": () => json(200, { count: held.length, next: null, previous: null, results: held }),
      [`DELETE /api/v1/blobs/${A}/`]: () => json(409, { error: { code: "in_use", message: "a job of yours uses it", fields: {} } }),
      [`DELETE /api/v1/blobs/${B}/`]: () => {
        held = held.filter((b) => b.sha256 !== B);
        return new Response(null, { status: 204 });
      },
    });
    const user = userEvent.setup();
    render(<StoragePanel />);
    // then
    expect(await screen.findByTestId("quota")).toHaveTextContent("1.00 GB of 5.00 GB used.");
    expect(screen.getByRole("progressbar", { name: "Storage used" })).toHaveAttribute("value", String(GiB + 2048));
    const table = await screen.findByRole("table", { name: "Your stored files" });
    expect(within(table).getAllByTestId("blob-row").map((r) => r.textContent)).toEqual([
      expect.stringContaining("train.csv1.00 GBaaaaaaaaaaaa…"),
      expect.stringContaining("result.pt2.0 KB"),
    ]);
    expect(table).toHaveTextContent("a job's output");
    // when a file in use is deleted: the reason, and it stays
    await user.click(screen.getByRole("button", { name: "Delete train.csv" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("That file is used by a job of yours that hasn't finished; delete it after the job ends.");
    // when another is deleted: gone, and the quota is read again
    await user.click(screen.getByRole("button", { name: "Delete result.pt" }));
    await waitFor(() => expect(screen.getAllByTestId("blob-row")).toHaveLength(1));
    expect(screen.getByTestId("quota")).toHaveTextContent("1.00 GB of 5.00 GB used.");
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.url)).toEqual([`/api/v1/blobs/${A}/`, `/api/v1/blobs/${B}/`]);
  });
});
