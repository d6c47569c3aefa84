import userEvent from "@testing-library/user-event";
// Each page renders the API's shapes (as the backend branches define them) without crashing,
// and the job page's live view works from socket events.
import { act, render, screen, waitFor, within } from "@testing-library/react";
import { MemoryRouter, Route, Routes, useLocation } from "react-router";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { FakeSocket } from "../test/fakeSocket";
import { CatalogPage } from "./Catalog";
import { HostPage } from "./HostDetail";
import { HostingPage } from "./Hosting";
import { JobPage } from "./Job";
import { JobsPage } from "./Jobs";
import { ReportsPage } from "./Reports";
import { WalletPage } from "./Wallet";

const page = <T,>(results: T[]) => ({ count: results.length, next: null, previous: null, results });

const host = {
  id: 5,
  name: "lab-1",
  cpu_model: "AMD EPYC",
  arch: "x86_64",
  cpus: 8,
  memory_mb: 16384,
  disk_free_mb: 100000,
  os: "linux",
  os_version: "Debian 12",
  gpus: [{ model: "NVIDIA H100", memory_mb: 81920 }],
  gpu_count: 1,
  docker_available: true,
  agent_version: "0.1.0",
  cpu_core_hour_micros: 36_000_000,
  memory_gb_hour_micros: 3_600_000,
  gpu_hour_micros: 1_000_000,
  price_micros: 36_000_000,
  max_job_cpus: 0,
  max_job_memory_mb: 0,
  max_job_gpus: 0,
  max_job_timeout_seconds: 86400,
  allow_network: false,
  status: "online",
  is_available: true,
  is_draining: false,
  is_accepting_jobs: true,
  last_seen_at: "2026-05-01T10:00:00Z",
  visibility: "public",
  organisation: null,
  reliability_bps: 9500,
  uptime_bps: 9990,
  jobs_finished: 19,
  jobs_lost: 1,
  created_at: "2026-04-01T10:00:00Z",
  availability_policy: { timezone: "Europe/Berlin", windows: [{ days: [0, 1], start: "18:00", end: "08:00" }], idle_minutes: 10, max_load: 25 },
};

const job = {
  id: 42,
  status: "running",
  status_reason: "",
  attempt: 1,
  max_attempts: 3,
  placement: "auto",
  requested_host: null,
  host: 5,
  entrypoint: "main.py",
  requirements: [],
  cpus: 1,
  memory_mb: 1024,
  gpus: 0,
  timeout_seconds: 600,
  max_cost_micros: 5_000_000,
  cost_micros: 1_000,
  exit_code: null,
  cancel_requested: false,
  created_at: "2026-05-01T10:00:00Z",
  started_at: "2026-05-01T10:00:05Z",
  finished_at: null,
};

function renderAt(path: string, route: string, element: React.ReactNode) {
  return render(
    <MemoryRouter initialEntries={[path]}>
      <Routes>
        <Route path={route} element={element} />
      </Routes>
    </MemoryRouter>,
  );
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.stubGlobal("WebSocket", FakeSocket);
});

describe("pages", () => {
  it("catalog lists hosts with rates and reliability", async () => {
    const { calls } = mockFetch({ "GET /api/v1/hosts/": () => json(200, page([host])) });
    renderAt("/catalog?min_cpus=4&gpu=1", "/catalog", <CatalogPage />);
    expect(await screen.findByRole("link", { name: "lab-1" })).toBeInTheDocument();
    expect(screen.getByText(/36.00 cr\/core-h/)).toBeInTheDocument();
    expect(screen.getByText(/95.0 % reliable/)).toBeInTheDocument();
    expect(calls[0]!.url).toBe("/api/v1/hosts/?min_cpus=4&gpu=true&online=true&ordering=price");
  });

  it("catalog filters on the disk one job may take, in GB, and shows each host's", async () => {
    // given one host with a per-job disk cap and one with only its free disk known
    const capped = { ...host, id: 6, name: "lab-2", job_disk_mb: 51200, disk_free_mb: 200000 };
    const { calls } = mockFetch({ "GET /api/v1/hosts/": () => json(200, page([{ ...host, job_disk_mb: null }, capped])) });
    renderAt("/catalog", "/catalog", <CatalogPage />);
    const rows = await screen.findAllByRole("row");
    expect(within(rows.find((r) => within(r).queryByText("lab-1"))!).getByText("97.7 GB")).toHaveAttribute("data-label", "Disk per job");
    expect(within(rows.find((r) => within(r).queryByText("lab-2"))!).getByText("50 GB")).toBeInTheDocument();
    // when a minimum of 2.5 GB is typed
    await userEvent.setup().type(screen.getByLabelText("Min. disk per job (GB)"), "2.5");
    // then the API is asked in MB, as the memory filter is
    await waitFor(() => expect(calls.at(-1)!.url).toBe("/api/v1/hosts/?min_disk_mb=2560&online=true&ordering=price"));
  });

  it("catalog pages by the API's cursors, Next and Previous, and keeps the cursor in the URL", async () => {
    // given a first page with a next link, and a second with a previous one
    const link = (cursor: string) => `http://testserver/api/v1/hosts/?online=true&ordering=price&cursor=${cursor}`;
    const { calls } = mockFetch({
      "GET /api/v1/hosts/": (call) =>
        call.url.includes("cursor=next-2")
          ? json(200, { count: 3, count_is_capped: false, next: null, previous: link("before-2"), results: [{ ...host, id: 7, name: "lab-3" }] })
          : json(200, { count: 3, count_is_capped: false, next: link("next-2"), previous: null, results: [host] }),
    });
    function Where() {
      return <output data-testid="where">{useLocation().search}</output>;
    }
    renderAt("/catalog", "/catalog", <><CatalogPage /><Where /></>);
    await screen.findByRole("link", { name: "lab-1" });
    expect(screen.getByRole("button", { name: "Previous" })).toBeDisabled();

    // when Next is pressed
    await userEvent.setup().click(screen.getByRole("button", { name: "Next" }));

    // then the API is asked for the page its next link named, and the URL holds the cursor
    expect(await screen.findByRole("link", { name: "lab-3" })).toBeInTheDocument();
    expect(calls.at(-1)!.url).toBe("/api/v1/hosts/?online=true&ordering=price&cursor=next-2");
    expect(screen.getByTestId("where")).toHaveTextContent("?cursor=next-2");
    expect(screen.getByRole("button", { name: "Next" })).toBeDisabled();

    // and Previous follows the previous link
    await userEvent.setup().click(screen.getByRole("button", { name: "Previous" }));
    await waitFor(() => expect(calls.at(-1)!.url).toBe("/api/v1/hosts/?online=true&ordering=price&cursor=before-2"));
  });

  it("catalog opened at a cursor asks for that page, and a new filter starts again", async () => {
    // given a reload on a later page
    const { calls } = mockFetch({ "GET /api/v1/hosts/": () => json(200, page([host])) });
    renderAt("/catalog?ordering=-cpus&cursor=abc", "/catalog", <CatalogPage />);
    await screen.findByRole("link", { name: "lab-1" });
    expect(calls[0]!.url).toBe("/api/v1/hosts/?online=true&ordering=-cpus&cursor=abc");

    // when a filter changes
    await userEvent.setup().click(screen.getByLabelText("Has a GPU"));

    // then the first page of the new set is asked for
    await waitFor(() => expect(calls.at(-1)!.url).toBe("/api/v1/hosts/?gpu=true&online=true&ordering=-cpus"));
  });

  it("catalog says more than N machines when the count stopped at its cap", async () => {
    mockFetch({
      "GET /api/v1/hosts/": () => json(200, { count: 1000, count_is_capped: true, next: "http://testserver/api/v1/hosts/?cursor=x", previous: null, results: [host] }),
    });
    renderAt("/catalog", "/catalog", <CatalogPage />);
    expect(await screen.findByText("More than 1,000 machines match.")).toHaveAttribute("role", "status");
  });

  it("catalog says how many machines match when the count is exact", async () => {
    mockFetch({ "GET /api/v1/hosts/": () => json(200, { ...page([host]), count: 1, count_is_capped: false }) });
    renderAt("/catalog", "/catalog", <CatalogPage />);
    expect(await screen.findByText("1 machine matches.")).toHaveAttribute("role", "status");
  });

  it("host page shows specs, rates, reliability and availability", async () => {
    mockFetch({ "GET /api/v1/hosts/5/": () => json(200, host) });
    renderAt("/hosts/5", "/hosts/:id", <HostPage />);
    expect(await screen.findByRole("heading", { name: "lab-1" })).toBeInTheDocument();
    expect(screen.getByText("36.00 cr per core-hour used")).toBeInTheDocument();
    expect(screen.getByText(/Mon,Tue 18:00–08:00 \(Europe\/Berlin\)/)).toBeInTheDocument();
    expect(screen.getByText(/under 25 % CPU/)).toBeInTheDocument();
  });

  it("wallet shows one history line per job, and its ledger entries on request", async () => {
    const jobLine = {
      line: "job", job_id: 42, job_name: "train.py", transaction_id: null, memo: "", started_at: "2026-05-01T10:00:00Z", at: "2026-05-01T10:05:00Z",
      amount_micros: -400_000, hold_micros: 2_000_000, charged_micros: 400_000, reversed_micros: 0, refund_micros: 1_600_000, held_micros: 0, cost_micros: 400_000, entry_count: 3,
    };
    const purchase = { ...jobLine, line: "purchase", job_id: null, job_name: null, transaction_id: 1, memo: "card payment", amount_micros: 5_000_000, hold_micros: 0, charged_micros: 0, refund_micros: 0, cost_micros: 0, entry_count: 1 };
    const { calls } = mockFetch({
      "GET /api/v1/wallet/": () => json(200, { balance_micros: 20_000_000, held_micros: 5_000_000, available_micros: 15_000_000 }),
      "GET /api/v1/wallet/history/": () => json(200, page([jobLine, purchase])),
      "GET /api/v1/wallet/transactions/": () =>
        json(200, page([{ id: 1, created_at: "2026-05-01T10:00:00Z", kind: "hold", account: "escrow", amount_micros: 2_000_000, job_id: 42, memo: "", transaction_id: 3 }])),
    });
    renderAt("/wallet", "/wallet", <WalletPage />);
    expect(await screen.findByTestId("available")).toHaveTextContent("15.00 cr");
    expect(await screen.findByRole("link", { name: "train.py" })).toHaveAttribute("href", "/jobs/42");
    const [job, bought] = screen.getAllByTestId("history-line");
    expect(job).toHaveTextContent("cost 0.40 cr · 1.60 cr of the 2.00 cr hold returned");
    expect(bought).toHaveTextContent("Credits bought");
    expect(screen.getByRole("link", { name: "Download CSV" })).toHaveAttribute("href", "/api/v1/wallet/history/?format=csv");
    expect(screen.queryByTestId("line-entries")).toBeNull();
    // when the job's entries are opened
    await userEvent.setup().click(screen.getByRole("button", { name: "Entries (3)" }));
    expect(await screen.findByTestId("line-entries")).toHaveTextContent("Hold for a job");
    expect(screen.getByText("held for the job")).toBeInTheDocument();
    expect(calls.some((c) => c.method === "GET" && c.url.includes("/api/v1/wallet/transactions/") && c.url.includes("job=42"))).toBe(true);
    expect(screen.getByRole("button", { name: "Hide entries" })).toHaveAttribute("aria-expanded", "true");
  });

  it("jobs list links each job", async () => {
    mockFetch({ "GET /api/v1/jobs/": () => json(200, page([job])) });
    renderAt("/jobs", "/jobs", <JobsPage />);
    expect(await screen.findByRole("link", { name: /#42/ })).toBeInTheDocument();
    expect(screen.getByText("Running")).toBeInTheDocument();
  });

  it("hosting dashboard shows hosts, earnings and payouts", async () => {
    mockFetch({
      "GET /api/v1/my/hosts/": () => json(200, page([host])),
      "GET /api/v1/earnings/": () =>
        json(200, {
          pending_micros: 900,
          available_micros: 100,
          in_payout_micros: 0,
          paid_micros: 0,
          count: 1,
          next: null,
          previous: null,
          results: [{ job_id: 42, gross_micros: 1000, fee_micros: 100, net_micros: 900, reversed_micros: 0, earned_micros: 900, last_charged_at: "2026-05-01T10:00:00Z" }],
        }),
      "GET /api/v1/payouts/": () => json(200, page([{ id: 1, amount_micros: 10_000_000, status: "paid", created_at: "2026-05-01T10:00:00Z" }])),
    });
    renderAt("/hosting", "/hosting", <HostingPage />);
    expect(await screen.findByTestId("my-host-5")).toHaveTextContent("Online");
    expect(await screen.findByTestId("earnings-pending")).toHaveTextContent("0.0009 cr");
    expect(screen.getByRole("img", { name: /Earnings over time.*2 points from 2026-04-30 to 2026-05-01/ })).toBeInTheDocument();
    expect(screen.getByText("paid")).toBeInTheDocument();
  });

  it("reports show the reconciliation and the per-day table", async () => {
    const figures = {
      credits_bought_micros: 20_000_000,
      grants_micros: 0,
      gross_charges_micros: 1000,
      platform_fees_micros: 100,
      host_earnings_micros: 900,
      reversals_micros: 0,
      refunds_micros: 0,
      payouts_micros: 0,
    };
    const report = {
      from: "2026-05-01",
      to: "2026-05-01",
      group_by: "day",
      rows: [
        { ...figures, day: "2026-05-01", host: null, host_name: null, owner: null, owner_username: null, user: null, username: null },
        ...["2026-05-02", "2026-05-03"].map((day) => ({
          ...Object.fromEntries(Object.keys(figures).map((k) => [k, 0])),
          day, host: null, host_name: null, owner: null, owner_username: null, user: null, username: null,
        })),
      ],
      totals: figures,
      top_hosts: [{ ...figures, day: null, host: 5, host_name: "lab-1", owner: 2, owner_username: "hana", user: null, username: null }],
      top_renters: [{ ...figures, day: null, host: null, host_name: null, owner: null, owner_username: null, user: 1, username: "alice" }],
    };
    mockFetch({
      "GET /api/v1/admin/reports/billing/": () => json(200, report),
      "GET /api/v1/admin/reports/reconciliation/": () =>
        json(200, { last_run: { is_clean: true, finished_at: "2026-05-01T10:00:00Z", problem_count: 0, problems: [], accounts_checked: 4, transactions_checked: 9 }, invariants: [] }),
    });
    renderAt("/reports", "/reports", <ReportsPage />);
    expect(await screen.findByTestId("reconciliation")).toHaveTextContent("Clean");
    const table = await screen.findByRole("table", { name: "Per day, days with activity" });
    expect(table).toHaveTextContent("2026-05-01");
    // days of zeros are left out, and said to be
    expect(table).not.toHaveTextContent("2026-05-02");
    expect(screen.getByTestId("quiet-days")).toHaveTextContent("2 days without activity left out.");
    // money in and money earned on separate charts (separate scales)
    expect(screen.getByRole("img", { name: /^Money in per day/ })).toBeInTheDocument();
    expect(screen.getByRole("img", { name: /^Money earned per day/ })).toBeInTheDocument();
    expect(table).toHaveTextContent("20.00 cr");
    expect(screen.getByRole("table", { name: "The hosts with the most gross charges" })).toHaveTextContent("lab-1 (hana)");
    expect(screen.getByRole("table", { name: "The renters with the most gross charges" })).toHaveTextContent("alice");
    expect(within(table).getByRole("columnheader", { name: "Platform fees" })).toBeInTheDocument();
  });
});

describe("the receipt", () => {
  it("shows each attempt's usage and rates, and what the hold became", async () => {
    const attempt = {
      attempt: 1,
      host_id: 5,
      status: "succeeded",
      started_at: "2026-05-01T10:00:05Z",
      finished_at: "2026-05-01T10:00:15Z",
      wall_seconds: "10",
      memory_peak_mb: 40,
      usage: [
        { resource: "cpu", quantity: "2.5", unit: "core-second", rate_micros_per_hour: 36_000_000 },
        { resource: "memory", quantity: "10", unit: "GB-second", rate_micros_per_hour: 3_600_000 },
      ],
      usage_cost_micros: 35_000,
      gross_micros: 35_000,
      fee_micros: 3_500,
      host_net_micros: 31_500,
      reversed_micros: 0,
      reversed_fee_micros: 0,
      charged_micros: 35_000,
    };
    const receipt = {
      job_id: 42,
      status: "succeeded",
      is_settled: true,
      max_cost_micros: 5_000_000,
      attempts: [attempt],
      totals: { gross_micros: 35_000, fee_micros: 3_500, host_net_micros: 31_500, reversed_micros: 0, charged_micros: 35_000 },
      hold_micros: 5_000_000,
      refund_micros: 4_965_000,
      held_micros: 0,
    };
    const finished = { ...job, status: "succeeded", status_reason: "exit code 0", exit_code: 0, finished_at: "2026-05-01T10:00:15Z", cost_micros: 35_000 };
    mockFetch({
      "GET /api/v1/jobs/42/": () => json(200, finished),
      "GET /api/v1/jobs/42/logs/": () => json(200, { job_id: 42, attempt: 1, offset: 0, next_offset: 0, data: "", truncated: false, is_complete: true }),
      "GET /api/v1/jobs/42/outputs/": () => json(200, page([{ name: "result.txt", size: 4, sha256: "x", attempt: 1, uploaded_at: null }])),
      "GET /api/v1/jobs/42/receipt/": () => json(200, receipt),
    });
    renderAt("/jobs/42", "/jobs/:id", <JobPage />);
    const view = await screen.findByTestId("receipt");
    expect(within(view).getByRole("table", { name: /Attempt 1 on host #5/ })).toHaveTextContent("2.5 core-seconds");
    expect(view).toHaveTextContent("36.00 cr/core-hour");
    expect(screen.getByTestId("receipt-charged")).toHaveTextContent("0.035 cr");
    expect(view).toHaveTextContent("Returned to your wallet4.96 cr");
    expect(screen.getByRole("link", { name: "result.txt" })).toHaveAttribute("href", "/api/v1/jobs/42/outputs/result.txt");
  });
});

describe("a finished job's stored history", () => {
  it("draws the charts and the timeline from the stored usage and steps", async () => {
    const finished = { ...job, name: "train.py", status: "succeeded", status_reason: "exit code 0", exit_code: 0, started_at: "2026-05-01T10:00:03Z", finished_at: "2026-05-01T10:00:30Z", cost_micros: 30_000 };
    const sample = (n: number) => ({ at: `2026-05-01T10:00:${String(3 + n * 5).padStart(2, "0")}Z`, cpu_seconds: n * 4, wall_seconds: n * 5, memory_current_mb: 100 + n, memory_peak_mb: 110, cost_micros: n * 6_000 });
    const history = {
      job_id: 42,
      attempts: [{ attempt: 1, host_id: 5, host_name: "lab-1", status: "succeeded", report_count: 5, samples: [1, 2, 3, 4, 5].map(sample) }],
      timeline: [
        { at: "2026-05-01T10:00:00Z", status: "queued", attempt: null, reason: "" },
        { at: "2026-05-01T10:00:01Z", status: "offered", attempt: 1, reason: "" },
        { at: "2026-05-01T10:00:02Z", status: "accepted", attempt: 1, reason: "" },
        { at: "2026-05-01T10:00:03Z", status: "running", attempt: 1, reason: "" },
        { at: "2026-05-01T10:00:30Z", status: "succeeded", attempt: 1, reason: "exit code 0" },
      ],
    };
    const { calls } = mockFetch({
      "GET /api/v1/jobs/42/": () => json(200, finished),
      "GET /api/v1/jobs/42/usage/": () => json(200, history),
      "GET /api/v1/jobs/42/logs/": () => json(200, { job_id: 42, attempt: 1, offset: 0, next_offset: 0, data: "", truncated: false, is_complete: true }),
      "GET /api/v1/jobs/42/outputs/": () => json(200, page([])),
      "GET /api/v1/jobs/42/receipt/": () => json(404, { error: { code: "not_found", message: "", fields: {} } }),
    });
    renderAt("/jobs/42", "/jobs/:id", <JobPage />);
    expect(await screen.findByRole("heading", { level: 1 })).toHaveTextContent("train.py");
    expect(await screen.findByRole("img", { name: /^Cost so far/ })).toBeInTheDocument();
    expect(screen.getByRole("img", { name: /^Memory in use/ })).toBeInTheDocument();
    expect(screen.getByRole("img", { name: /^CPU cores in use/ })).toBeInTheDocument();
    const timeline = screen.getByRole("list", { name: "Status timeline" });
    expect(within(timeline).getAllByRole("listitem").map((li) => li.querySelector("strong")?.textContent)).toEqual([
      "Queued", "Offered to a host", "Accepted", "Running", "Succeeded",
    ]);
    expect(calls.some((c) => c.url === "/api/v1/jobs/42/usage/")).toBe(true);
  });
});

describe("the job page live view", () => {
  function logsRoute(full: string) {
    return (call: Call) => {
      const params = new URL(call.url, "http://x").searchParams;
      const offset = Number(params.get("offset"));
      return json(200, { job_id: 42, attempt: 1, offset, next_offset: full.length, data: full.slice(offset), truncated: false, is_complete: false });
    };
  }

  it("shows status changes and log chunks from the socket, filling gaps over HTTP", async () => {
    // given the server's log has three lines; the page connects
    let full = "";
    let current: Record<string, unknown> = job;
    const { calls } = mockFetch({
      "GET /api/v1/jobs/42/": () => json(200, current),
      "GET /api/v1/jobs/42/logs/": (call) => logsRoute(full)(call),
    });
    renderAt("/jobs/42", "/jobs/:id", <JobPage />);
    await screen.findByRole("heading", { name: /job #42/ });
    const socket = FakeSocket.all[0]!;
    expect(socket.url).toMatch(/\/ws\/jobs\/42\/$/);
    act(() => socket.open());
    // (the catch-ups on load and on open have found nothing yet)
    await waitFor(() => expect(calls.filter((c) => c.url.includes("/logs/"))).toHaveLength(2));
    // when line 1 arrives, line 2 is lost, line 3 arrives
    full = "a\nb\nc\n";
    act(() => socket.send({ type: "job.log", job_id: 42, attempt: 1, offset: 0, next_offset: 2, data: "a\n" }));
    act(() => socket.send({ type: "job.log", job_id: 42, attempt: 1, offset: 4, next_offset: 6, data: "c\n" }));
    // then the log is whole and in order
    await waitFor(() => expect(screen.getByRole("log").textContent).toBe("a\nb\nc\n"));
    expect(calls.some((c) => c.url.startsWith("/api/v1/jobs/42/logs/?offset=2"))).toBe(true);
    // and a status event with a reason shows up in the timeline (the API agrees, as the truth)
    current = { ...job, status: "failed", status_reason: "exit code 3", exit_code: 3, finished_at: "2026-05-01T10:01:00Z" };
    act(() =>
      socket.send({ type: "job.status", job_id: 42, status: "failed", status_reason: "exit code 3", attempt: 1, host: 5, exit_code: 3, cost_micros: 2000 }),
    );
    await waitFor(() => expect(screen.getByTestId("job-status")).toHaveTextContent("Failed"));
    expect(screen.getAllByText("exit code 3").length).toBeGreaterThan(0);
  });

  it("links a task's job to its group", async () => {
    mockFetch({
      "GET /api/v1/jobs/42/": () => json(200, { ...job, group: 7, task_index: 3 }),
      "GET /api/v1/jobs/42/logs/": (call) => logsRoute("")(call),
    });
    renderAt("/jobs/42", "/jobs/:id", <JobPage />);
    expect(await screen.findByRole("link", { name: "Task #3 of group #7" })).toHaveAttribute("href", "/groups/7");
  });

  it("reconnects after a drop and catches up by offset", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let full = "one\n";
    const { calls } = mockFetch({
      "GET /api/v1/jobs/42/": () => json(200, job),
      "GET /api/v1/jobs/42/logs/": (call) => logsRoute(full)(call),
    });
    renderAt("/jobs/42", "/jobs/:id", <JobPage />);
    await screen.findByRole("heading", { name: /job #42/ });
    act(() => FakeSocket.all[0]!.open());
    await waitFor(() => expect(screen.getByRole("log").textContent).toBe("one\n"));
    // when the socket drops and output is written meanwhile
    act(() => FakeSocket.all[0]!.drop());
    full = "one\ntwo\n";
    expect(await screen.findByText(/reconnecting/)).toBeInTheDocument();
    await act(() => vi.advanceTimersByTimeAsync(1500));
    // then a new socket opens and the page fetches from the offset it had
    expect(FakeSocket.all).toHaveLength(2);
    act(() => FakeSocket.all[1]!.open());
    await waitFor(() => expect(screen.getByRole("log").textContent).toBe("one\ntwo\n"));
    expect(calls.some((c) => c.url === "/api/v1/jobs/42/logs/?offset=4&attempt=1")).toBe(true);
  });
});
