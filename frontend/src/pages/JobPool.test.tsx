import { render, screen, waitFor, within } from "@testing-library/react";
import { asApiSettings } from "../test/poolApi";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { FakeSocket } from "../test/fakeSocket";
import { JobPage } from "./Job";
import { HostingPage } from "./Hosting";

const C = "c2".repeat(32);
const D = "d3".repeat(32);

const job = {
  id: 42, name: "train", status: "succeeded", status_reason: "exit code 0", attempt: 1, max_attempts: 3, placement: "auto", requested_host: null,
  host: 5, entrypoint: "main.py", requirements: [], cpus: 1, memory_mb: 1024, gpus: 0, timeout_seconds: 600, max_cost_micros: 5_000_000,
  cost_micros: 1_000, exit_code: 0, cancel_requested: false, created_at: "2026-05-01T10:00:00Z", started_at: "2026-05-01T10:00:05Z",
  finished_at: "2026-05-01T10:01:00Z", pool: 7,
};

const POOL_SETTINGS = {
  pool_required: false, pool_hidden: true, pool_fetch_networks: [], pool_fetch_hosts: [], pool_job_networks: [], pool_members_free: false,
  pool_output_store: { endpoint_url: "https://s3.example.org", bucket: "out", prefix: "", region: "" }, pool_logs: "redacted", pool_airlock: true,
};

beforeEach(() => {
  FakeSocket.all = [];
  vi.stubGlobal("WebSocket", FakeSocket);
});

function renderJob(body: Record<string, unknown>, routes: Record<string, (call: Call) => Response> = {}) {
  const mock = mockFetch({
    "GET /api/v1/jobs/42/": () => json(200, body),
    "GET /api/v1/jobs/42/usage/": () => json(200, { job_id: 42, attempts: [], timeline: [] }),
    "GET /api/v1/jobs/42/logs/": () => json(200, { job_id: 42, attempt: 1, offset: 0, next_offset: 5, data: "hello", truncated: false, is_complete: true }),
    "GET /api/v1/jobs/42/outputs/": () => json(200, { count: 0, next: null, previous: null, results: [] }),
    "GET /api/v1/jobs/42/receipt/": () => json(404, { error: { code: "not_found", message: "", fields: {} } }),
    "GET /api/v1/organisations/7/pool/": () => json(200, asApiSettings(POOL_SETTINGS)),
    ...routes,
  });
  render(
    <MemoryRouter initialEntries={["/jobs/42"]}>
      <Routes>
        <Route path="/jobs/:id" element={<JobPage />} />
      </Routes>
    </MemoryRouter>,
  );
  return mock;
}

describe("the job page of a pool job", () => {
  it("shows outputs kept on the pool's store with their state, no download link until released, and asks for a release", async () => {
    let state = "none";
    const outputs = () => [
      { name: "summary.csv", size: 2048, sha256: C, location: "pool", release_status: state },
      { name: "refused.bin", size: 10, sha256: D, location: "pool", release_status: "refused", release_note: "patient identifiers" },
      { name: "public.txt", size: 4, sha256: D, location: "central", release_status: "none" },
    ];
    const { calls } = renderJob(
      { ...job, pool_logs: "central" },
      {
        "GET /api/v1/jobs/42/": () => json(200, { ...job, pool_logs: "central", outputs: outputs() }),
        "POST /api/v1/jobs/42/outputs/summary.csv/release/": () => {
          state = "requested";
          return json(202, { status: "requested" });
        },
      },
    );
    const summary = await screen.findByTestId("output-summary.csv");
    expect(within(screen.getByTestId("job-pool")).getByRole("link")).toHaveAttribute("href", "/organisations/7");
    expect(within(summary).queryByRole("link")).toBeNull();
    expect(summary).toHaveTextContent("Kept on the organisation's store: it leaves only when released.");
    const refused = screen.getByTestId("output-refused.bin");
    expect(refused).toHaveTextContent("Release refused by a data steward Note: “patient identifiers”");
    expect(within(refused).queryByRole("button", { name: /Ask for the release/ })).toBeNull();
    expect(within(screen.getByTestId("output-public.txt")).getByRole("link", { name: "public.txt" })).toHaveAttribute("href", "/api/v1/jobs/42/outputs/public.txt");

    const user = userEvent.setup();
    await user.click(within(summary).getByRole("button", { name: "Ask for the release of summary.csv" }));
    await waitFor(() => expect(screen.getByTestId("output-summary.csv")).toHaveTextContent("Release requested: waiting for a data steward"));
    expect(calls.some((c) => c.method === "POST" && c.url === "/api/v1/jobs/42/outputs/summary.csv/release/")).toBe(true);
    expect(within(screen.getByTestId("output-summary.csv")).queryByRole("button", { name: /Ask for the release/ })).toBeNull();
    // the log was sent to the server: shown as for any job
    expect(await screen.findByRole("log")).toHaveTextContent("hello");
  });

  it("links a released output, and says why a download was refused (409 output_not_released)", async () => {
    renderJob({ ...job, pool_logs: "central", outputs: [{ name: "summary.csv", size: 2048, sha256: C, location: "pool", release_status: "released" }] });
    expect(await screen.findByRole("link", { name: "summary.csv" })).toHaveAttribute("href", "/api/v1/jobs/42/outputs/summary.csv");
    const { apiErrorFrom } = await import("../api/errors");
    expect(apiErrorFrom(409, { error: { code: "output_not_released", message: "the output's release is requested", fields: {} } }).message).toBe(
      "That output is kept on the organisation's store and has not been released: its release is waiting for a data steward's decision.",
    );
  });

  it("shows a sentence instead of a log the pool keeps on its store", async () => {
    renderJob({ ...job, pool_logs: "store" });
    expect(await screen.findByTestId("pool-log-notice")).toHaveTextContent("keeps its logs on the organisation's own store");
    expect(screen.queryByRole("log")).toBeNull();
  });

  it("reads where the log went from the pool's settings when the job does not say", async () => {
    const { calls } = renderJob(job);
    expect(await screen.findByTestId("pool-log-notice")).toHaveTextContent("keeps no job logs");
    expect(calls.some((c) => c.url === "/api/v1/organisations/7/pool/")).toBe(true);
    expect(screen.queryByRole("log")).toBeNull();
  });

  it("shows the log of a job outside any pool without asking for pool settings", async () => {
    const { pool: _pool, ...plain } = job;
    const { calls } = renderJob(plain);
    expect(await screen.findByRole("log")).toHaveTextContent("hello");
    expect(calls.some((c) => c.url.startsWith("/api/v1/organisations/"))).toBe(false);
    expect(screen.queryByTestId("job-pool")).toBeNull();
  });
});

describe("the Hosting page's pools", () => {
  const host = (extra: Record<string, unknown>) => ({
    id: 5, name: "lab-1", status: "online", cpus: 8, memory_mb: 16384, gpus: [], cpu_core_hour_micros: 50_000, memory_gb_hour_micros: 0, gpu_hour_micros: 0,
    availability_policy: { timezone: "UTC", windows: [], idle_minutes: null, max_load: null }, is_available: true, isolation: "docker", visibility: "public",
    organisation: null, last_seen_at: null, reliability_bps: 10_000, jobs_finished: 0, jobs_lost: 0, ...extra,
  });

  function renderHosting(routes: Record<string, (call: Call) => Response>) {
    const mock = mockFetch({
      "GET /api/v1/organisations/": () => json(200, { count: 1, next: null, previous: null, results: [{ id: 7, name: "City Hospital", created_at: "", role: "member" }] }),
      "GET /api/v1/earnings/": () => json(200, { count: 0, next: null, previous: null, results: [], pending_micros: 0, available_micros: 0, in_payout_micros: 0, paid_micros: 0 }),
      "GET /api/v1/payouts/": () => json(200, { count: 0, results: [] }),
      ...routes,
    });
    render(
      <MemoryRouter initialEntries={["/hosting"]}>
        <HostingPage />
      </MemoryRouter>,
    );
    return mock;
  }

  it("joins a machine to a pool with a token, and names a refused token in words at the field", async () => {
    let joined = false;
    const { calls } = renderHosting({
      "GET /api/v1/my/hosts/": () => json(200, { count: 1, next: null, previous: null, results: [host(joined ? { organisation: 7, visibility: "private" } : {})] }),
      "POST /api/v1/my/hosts/5/pool/": (call) => {
        if ((call.body as { token: string }).token !== "cpp_good") return json(400, { error: { code: "invalid_token", message: "invalid token", fields: {} } });
        joined = true;
        return json(200, host({ organisation: 7, visibility: "private" }));
      },
    });
    const line = await screen.findByTestId("host-pool-5");
    const user = userEvent.setup();
    await user.click(within(line).getByRole("button", { name: "Join a pool" }));
    await user.click(within(line).getByRole("button", { name: "Join" }));
    expect(within(line).getByText(/Paste the pool token/)).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST")).toHaveLength(0);
    await user.type(within(line).getByLabelText("Pool token"), "cpp_bad");
    await user.click(within(line).getByRole("button", { name: "Join" }));
    expect(await within(line).findByText(/That pool token is not valid/)).toBeInTheDocument();
    expect(within(line).getByLabelText("Pool token")).toHaveAttribute("aria-invalid", "true");
    await user.clear(within(line).getByLabelText("Pool token"));
    await user.type(within(line).getByLabelText("Pool token"), "cpp_good");
    await user.click(within(line).getByRole("button", { name: "Join" }));
    expect(await screen.findByRole("link", { name: "City Hospital" })).toHaveAttribute("href", "/organisations/7?tab=hosts");
    expect(calls.filter((c) => c.method === "POST")[1]!.body).toEqual({ token: "cpp_good" });
  });

  it("leaves a pool after a confirmation", async () => {
    let inPool = true;
    const { calls } = renderHosting({
      "GET /api/v1/my/hosts/": () => json(200, { count: 1, next: null, previous: null, results: [host(inPool ? { organisation: 7, visibility: "private" } : {})] }),
      "DELETE /api/v1/my/hosts/5/pool/": () => {
        inPool = false;
        return new Response(null, { status: 204 });
      },
    });
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Leave the pool" }));
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    await user.click(screen.getByRole("button", { name: "Yes, leave the pool" }));
    expect(await screen.findByRole("button", { name: "Join a pool" })).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.url)).toEqual(["/api/v1/my/hosts/5/pool/"]);
  });
});
