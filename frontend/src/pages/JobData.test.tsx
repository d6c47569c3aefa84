import { render, screen, within } from "@testing-library/react";
import { MemoryRouter, Route, Routes } from "react-router";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { json, mockFetch } from "../test/fetchMock";
import { FakeSocket } from "../test/fakeSocket";
import { JobPage } from "./Job";

const A = "a".repeat(64);
const B = "b1".repeat(32);
const C = "c2".repeat(32);

const job = {
  id: 42, name: "train", status: "succeeded", status_reason: "exit code 0", attempt: 1, max_attempts: 3, placement: "auto", requested_host: null,
  host: 5, entrypoint: "main.py", requirements: [], cpus: 1, memory_mb: 1024, gpus: 0, timeout_seconds: 600, max_cost_micros: 5_000_000,
  cost_micros: 1_000, exit_code: 0, cancel_requested: false, created_at: "2026-05-01T10:00:00Z", started_at: "2026-05-01T10:00:05Z",
  finished_at: "2026-05-01T10:01:00Z",
  inputs: [
    { path: "data/train.csv", sha256: A, size: 3 * 1024 * 1024 * 1024, source: "store", url: "" },
    { path: "weights.bin", sha256: B, size: null, source: "url", url: "https://models.example.org/w.bin" },
  ],
  outputs: [{ name: "model/result.pt", size: 2048, sha256: C }],
  disk: { work_mb: 4096, outputs_mb: 1024, tmp_mb: 256 },
  work_exec: true,
};

beforeEach(() => {
  FakeSocket.all = [];
  vi.stubGlobal("WebSocket", FakeSocket);
});

function renderJob(body: Record<string, unknown>) {
  mockFetch({
    "GET /api/v1/jobs/42/": () => json(200, body),
    "GET /api/v1/jobs/42/usage/": () => json(200, { job_id: 42, attempts: [], timeline: [] }),
    "GET /api/v1/jobs/42/logs/": () => json(200, { job_id: 42, attempt: 1, offset: 0, next_offset: 0, data: "", truncated: false, is_complete: true }),
    "GET /api/v1/jobs/42/outputs/": () => json(200, { count: 1, next: null, previous: null, results: [{ name: "listed.txt", size: 4, sha256: A, attempt: 1, uploaded_at: null }] }),
    "GET /api/v1/jobs/42/receipt/": () => json(404, { error: { code: "not_found", message: "", fields: {} } }),
  });
  render(
    <MemoryRouter initialEntries={["/jobs/42"]}>
      <Routes>
        <Route path="/jobs/:id" element={<JobPage />} />
      </Routes>
    </MemoryRouter>,
  );
}

describe("the job page's data", () => {
  it("lists the inputs with size, shortened sha256 and source, the outputs with download links, and the disk limits", async () => {
    renderJob(job);
    const inputs = await screen.findByRole("table", { name: "Inputs, read-only in /inputs" });
    const [first, second] = within(inputs).getAllByRole("row").slice(1);
    expect(first).toHaveTextContent("data/train.csv3.00 GBaaaaaaaaaaaa…");
    expect(first).toHaveTextContent("uploaded");
    expect(within(first!).getByTitle(A)).toBeInTheDocument();
    expect(within(first!).getByRole("button", { name: "Copy the sha256 of data/train.csv" })).toBeInTheDocument();
    expect(second).toHaveTextContent("weights.binnot known yet");
    expect(second).toHaveTextContent("fetched from models.example.org");
    const outputs = screen.getByTestId("job-outputs");
    expect(within(outputs).getByRole("link", { name: "model/result.pt" })).toHaveAttribute("href", "/api/v1/jobs/42/outputs/model/result.pt");
    expect(outputs).toHaveTextContent("2.0 KB");
    expect(within(outputs).getByTitle(C)).toHaveTextContent("c2c2c2c2c2c2…");
    expect(screen.getByTestId("job-disk")).toHaveTextContent("/work 4096 MB · /outputs 1024 MB · /tmp 256 MB · executables allowed in /work");
  });

  it("falls back to the outputs endpoint, and shows no inputs or disk for a job without them", async () => {
    const { inputs: _inputs, outputs: _outputs, disk: _disk, work_exec: _exec, ...plain } = job;
    renderJob(plain);
    expect(await screen.findByRole("link", { name: "listed.txt" })).toHaveAttribute("href", "/api/v1/jobs/42/outputs/listed.txt");
    expect(screen.queryByRole("table", { name: /Inputs/ })).toBeNull();
    expect(screen.queryByTestId("job-disk")).toBeNull();
  });
});
