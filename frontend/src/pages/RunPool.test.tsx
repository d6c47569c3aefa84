import { render, screen, waitFor, within } from "@testing-library/react";
import { asApiSettings } from "../test/poolApi";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { describe, expect, it, vi } from "vitest";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { RunPage } from "./Run";

// CodeMirror needs layout APIs jsdom lacks; a textarea stands in for it here.
vi.mock("../components/CodeEditor", () => ({
  CodeEditor: ({ value, onChange, label }: { value: string; onChange: (v: string) => void; label: string }) => (
    <textarea aria-label={label} value={value} onChange={(e) => onChange(e.target.value)} />
  ),
}));

const page = <T,>(results: T[]) => ({ count: results.length, next: null, previous: null, results });
const PUBLIC_HOST = { id: 5, name: "public-1", cpus: 8, memory_mb: 16384, status: "online", gpus: [], cpu_core_hour_micros: 50_000, memory_gb_hour_micros: 10_000, gpu_hour_micros: 0 };
const POOL_HOST = { ...PUBLIC_HOST, id: 9, name: "ward-3" };

function settings(required: boolean, free = false) {
  return {
    pool_required: required,
    pool_hidden: true,
    pool_fetch_networks: [],
    pool_fetch_hosts: [],
    pool_job_networks: [],
    pool_members_free: free,
    pool_output_store: {},
    pool_logs: "central",
    pool_airlock: false,
  };
}

function renderRun({
  required = false,
  path = "/run",
  submit,
  organisations = true,
}: { required?: boolean; path?: string; submit?: (call: Call) => Response; organisations?: boolean } = {}) {
  const mock = mockFetch({
    "GET /api/v1/organisations/": () =>
      organisations
        ? json(200, page([{ id: 7, name: "City Hospital", created_at: "", role: "member" }, { id: 8, name: "Lab", created_at: "", role: "member" }]))
        : json(200, page([])),
    "GET /api/v1/organisations/7/pool/": () => json(200, asApiSettings(settings(required, true))),
    "GET /api/v1/organisations/8/pool/": () => json(200, asApiSettings(settings(false))),
    "GET /api/v1/hosts/": (call) => json(200, page([call.url.includes("pool=7") ? POOL_HOST : PUBLIC_HOST])),
    "POST /api/v1/quotes/": (call) => {
      const pooled = (call.body as { pool?: number }).pool === 7;
      const host = pooled ? POOL_HOST : PUBLIC_HOST;
      return json(200, { estimate_micros: 100_000, hosts: [{ host: host.id, name: host.name, estimate_micros: 100_000 }] });
    },
    "GET /api/v1/organisations/7/wallet/me/": () => json(200, { spent_micros: 200_000_000, cap_micros: 250_000_000 }),
    "POST /api/v1/jobs/": submit ?? (() => json(201, { id: 99, status: "queued" })),
    "POST /api/v1/job-groups/": () => json(201, { id: 3, status: "running" }),
  });
  render(
    <MemoryRouter initialEntries={[path]}>
      <Routes>
        <Route path="/run" element={<RunPage />} />
        <Route path="/jobs/:id" element={<p>job page</p>} />
        <Route path="/groups/:id" element={<p>group page</p>} />
      </Routes>
    </MemoryRouter>,
  );
  return mock;
}

const quotes = (calls: Call[]) => calls.filter((c) => c.url === "/api/v1/quotes/");
const runIn = () => within(screen.getByTestId("run-in"));

describe("the Run page's “Run in”", () => {
  it("offers the public marketplace and the user's pools; a pool goes into the quote, the machine list and the submit", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    const { calls } = renderRun();
    const pub = await screen.findByRole("radio", { name: /The public marketplace/ });
    expect(pub).toBeChecked();
    expect(pub).toBeEnabled();
    expect(runIn().getByRole("radio", { name: "City Hospital's pool — free for members" })).not.toBeChecked();
    await waitFor(() => expect(quotes(calls)).toHaveLength(1));
    expect(quotes(calls)[0]!.body).not.toHaveProperty("pool");

    await user.click(runIn().getByRole("radio", { name: /City Hospital's pool/ }));
    await waitFor(() => expect(quotes(calls)).toHaveLength(2), { timeout: 2000 });
    expect(quotes(calls)[1]!.body).toMatchObject({ pool: 7 });
    expect(await screen.findByTestId("pool-month")).toHaveTextContent("This month you have spent 200.00 cr of your 250.00 cr cap.");
    expect(await screen.findByTestId("quote")).toHaveTextContent("cheapest: ward-3");
    // the machines to choose from are the pool's
    expect(calls.some((c) => c.url === "/api/v1/hosts/?online=true&ordering=price&pool=7")).toBe(true);
    await user.click(screen.getByRole("radio", { name: "Choose a machine" }));
    expect(within(screen.getByLabelText("Machine")).getByRole("option", { name: /ward-3/ })).toBeInTheDocument();
    expect(within(screen.getByLabelText("Machine")).queryByRole("option", { name: /public-1/ })).toBeNull();
    expect(screen.getByText(/Held from the organisation's wallet/)).toBeInTheDocument();
    await user.click(screen.getByRole("radio", { name: /^Automatic/ }));

    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    const submit = calls.find((c) => c.method === "POST" && c.url === "/api/v1/jobs/")!;
    expect(submit.body).toMatchObject({ pool: 7, placement: "auto" });
  });

  it("preselects a pool the organisation requires and does not offer the public marketplace", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    const { calls } = renderRun({ required: true });
    const pool = await screen.findByRole("radio", { name: /City Hospital's pool \(required by the organisation\)/ });
    await waitFor(() => expect(pool).toBeChecked());
    const pub = runIn().getByRole("radio", { name: /The public marketplace \(not open to you/ });
    expect(pub).toBeDisabled();
    await waitFor(() => expect(quotes(calls).some((q) => (q.body as { pool?: number }).pool === 7)).toBe(true), { timeout: 2000 });
    // another pool is still a choice
    await user.click(runIn().getByRole("radio", { name: "Lab's pool" }));
    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    expect(calls.find((c) => c.url === "/api/v1/jobs/")!.body).toMatchObject({ pool: 8 });
  });

  it("takes ?pool= from the URL and sends it with a group", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    const { calls } = renderRun({ path: "/run?mode=group&pool=8" });
    await waitFor(() => expect(runIn().getByRole("radio", { name: "Lab's pool" })).toBeChecked());
    await user.click(screen.getByRole("radio", { name: /A number of tasks/ }));
    await user.click(screen.getByRole("button", { name: /^Run \d+ tasks?$/ }));
    await screen.findByText("group page");
    expect(calls.find((c) => c.url === "/api/v1/job-groups/")!.body).toMatchObject({ pool: 8 });
  });

  it("shows the server's refusal of the pool at “Run in”, in words", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    renderRun({
      submit: () => json(400, { error: { code: "pool_required", message: "members of City Hospital must name its pool", fields: { pool: ["City Hospital requires pool"] } } }),
    });
    await screen.findByTestId("run-in");
    await user.click(screen.getByRole("button", { name: "Run" }));
    const error = await runIn().findByRole("alert");
    expect(error).toHaveTextContent("City Hospital requires pool");
    expect(screen.getByTestId("run-in")).toHaveAttribute("aria-describedby", "pool-error");
  });

  it("sends a pool job's 402 to the organisation's wallet", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    renderRun({
      path: "/run?pool=7",
      submit: () =>
        json(402, { error: { code: "member_cap_exceeded", message: "monthly cap 5000000, spent 4500000, requested 1000000", fields: {} } }),
    });
    await waitFor(() => expect(runIn().getByRole("radio", { name: /City Hospital's pool/ })).toBeChecked());
    await user.click(screen.getByRole("button", { name: "Run" }));
    expect(await screen.findByText(/past your monthly cap/)).toHaveTextContent(
      "This would take you past your monthly cap on the organisation's wallet (your cap is 5 credits a month; you have spent 4.50 credits this month; this needs 1 credit): lower the cost cap, ask an admin of the organisation to raise your cap, or wait for next month.",
    );
    expect(screen.getByRole("link", { name: "its wallet and your month" })).toHaveAttribute("href", "/organisations/7?tab=wallet");
  });

  it("shows no choice to a user in no organisation, and sends no pool", async () => {
    const user = userEvent.setup();
    const { calls } = renderRun({ organisations: false });
    await waitFor(() => expect(quotes(calls)).toHaveLength(1), { timeout: 2000 });
    expect(screen.queryByTestId("run-in")).toBeNull();
    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    expect(calls.find((c) => c.url === "/api/v1/jobs/")!.body).not.toHaveProperty("pool");
  });
});
