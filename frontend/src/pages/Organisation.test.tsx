import { render, screen, waitFor, within } from "@testing-library/react";
import { asApiSettings } from "../test/poolApi";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { afterEach, describe, expect, it } from "vitest";
import { AuthProvider } from "../auth";
import { pageConfigReset } from "../config";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { OrganisationPage } from "./Organisation";
import { OrganisationsPage } from "./Organisations";

type Handler = (call: Call) => Response;

function configEmbed(username: string) {
  const node = document.createElement("script");
  node.id = "cp-config";
  node.type = "application/json";
  node.textContent = JSON.stringify({
    user: { id: 1, username, email: `${username}@example.org`, is_staff: false },
    payment_provider: "demo",
    stripe_publishable_key: null,
    stripe_js_url: null,
    public_url: "https://cp.example.org",
  });
  document.body.appendChild(node);
  pageConfigReset();
}

afterEach(() => {
  document.getElementById("cp-config")?.remove();
  pageConfigReset();
});

const page = <T,>(results: T[], more: Record<string, unknown> = {}) => ({ count: results.length, next: null, previous: null, results, ...more });

const SETTINGS = {
  pool_required: false,
  pool_hidden: true,
  pool_fetch_networks: ["10.20.0.0/16"],
  pool_fetch_hosts: [],
  pool_job_networks: [],
  pool_members_free: false,
  pool_output_store: {},
  pool_logs: "central",
  pool_airlock: false,
};

const MEMBERS = [
  { username: "ada", role: "admin", created_at: "2026-11-01T10:00:00Z", is_steward: false, monthly_cap_micros: null },
  { username: "bob", role: "member", created_at: "2026-11-02T10:00:00Z", is_steward: true, monthly_cap_micros: 250_000_000 },
];

function renderOrg(username: string, role: "admin" | "member", routes: Record<string, Handler> = {}, tab = "members") {
  configEmbed(username);
  const mock = mockFetch({
    "GET /api/v1/organisations/7/": () => json(200, { id: 7, name: "City Hospital", created_at: "2026-11-01T10:00:00Z", role }),
    "GET /api/v1/organisations/7/members/": () => json(200, page(MEMBERS)),
    "GET /api/v1/organisations/7/pool/": () => json(200, asApiSettings(SETTINGS)),
    ...routes,
  });
  render(
    <AuthProvider>
      <MemoryRouter initialEntries={[`/organisations/7?tab=${tab}`]}>
        <Routes>
          <Route path="/organisations/:id" element={<OrganisationPage />} />
          <Route path="/organisations" element={<OrganisationsPage />} />
        </Routes>
      </MemoryRouter>
    </AuthProvider>,
  );
  return mock;
}

const sections = () => within(screen.getByRole("navigation", { name: "Organisation sections" })).getAllByRole("link").map((a) => a.textContent);

describe("the organisations list", () => {
  it("lists the user's organisations with their role, and creates one", async () => {
    configEmbed("ada");
    const { calls } = mockFetch({
      "GET /api/v1/organisations/": () => json(200, page([{ id: 7, name: "City Hospital", created_at: "2026-11-01T10:00:00Z", role: "admin" }])),
      "POST /api/v1/organisations/": () => json(201, { id: 8, name: "Lab", created_at: "2026-12-01T10:00:00Z", role: "admin" }),
      "GET /api/v1/organisations/8/": () => json(200, { id: 8, name: "Lab", created_at: "2026-12-01T10:00:00Z", role: "admin" }),
      "GET /api/v1/organisations/8/members/": () => json(200, page([MEMBERS[0]])),
    });
    render(
      <AuthProvider>
        <MemoryRouter initialEntries={["/organisations"]}>
          <Routes>
            <Route path="/organisations" element={<OrganisationsPage />} />
            <Route path="/organisations/:id" element={<OrganisationPage />} />
          </Routes>
        </MemoryRouter>
      </AuthProvider>,
    );
    const table = await screen.findByTestId("organisations");
    expect(within(table).getByRole("link", { name: "City Hospital" })).toHaveAttribute("href", "/organisations/7");
    expect(table).toHaveTextContent("Admin");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Create" }));
    expect(await screen.findByText("Give the organisation a name.")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST")).toHaveLength(0);
    await user.type(screen.getByLabelText("Organisation name"), "Lab");
    await user.click(screen.getByRole("button", { name: "Create" }));
    expect(await screen.findByRole("heading", { level: 1, name: /Lab/ })).toBeInTheDocument();
    expect(calls.find((c) => c.method === "POST")!.body).toEqual({ name: "Lab" });
  });
});

describe("an organisation's sections by role", () => {
  it("shows a member members, settings, hosts and wallet; a steward also releases; an admin everything", async () => {
    renderOrg("carl", "member");
    await screen.findByTestId("members");
    expect(sections()).toEqual(["Members", "Pool settings", "Hosts", "Wallet"]);
    // a member edits nobody, and may leave
    expect(screen.queryByRole("form", { name: /Settings of/ })).toBeNull();
    expect(screen.queryByRole("button", { name: "Add member" })).toBeNull();
  });

  it("shows a steward the releases", async () => {
    renderOrg("bob", "member");
    await screen.findByTestId("members");
    await waitFor(() => expect(sections()).toEqual(["Members", "Pool settings", "Hosts", "Wallet", "Releases"]));
    expect(screen.getByTestId("member-bob")).toHaveTextContent("250.00 cr a month");
    expect(screen.getByRole("button", { name: "Leave the organisation" })).toBeInTheDocument();
  });

  it("shows an admin every section, one at a time, the current one marked", async () => {
    renderOrg("ada", "admin", { "GET /api/v1/organisations/7/audit/": () => json(200, page([])) });
    await screen.findByTestId("members");
    expect(sections()).toEqual(["Members", "Pool settings", "Hosts", "Wallet", "Reports", "Audit", "Releases"]);
    const nav = within(screen.getByRole("navigation", { name: "Organisation sections" }));
    expect(nav.getByRole("link", { name: "Members" })).toHaveAttribute("aria-current", "page");
    await userEvent.setup().click(nav.getByRole("link", { name: "Audit" }));
    expect(await screen.findByRole("heading", { level: 2, name: "Audit" })).toBeInTheDocument();
    expect(nav.getByRole("link", { name: "Audit" })).toHaveAttribute("aria-current", "page");
    expect(screen.queryByTestId("members")).toBeNull();
    expect(await screen.findByText("Nothing recorded yet.")).toBeInTheDocument();
  });

  it("says so when the organisation is not the user's (404), without its sections", async () => {
    configEmbed("eve");
    mockFetch({
      "GET /api/v1/organisations/7/": () => json(404, { error: { code: "not_found", message: "", fields: {} } }),
      "GET /api/v1/organisations/7/members/": () => json(404, { error: { code: "not_found", message: "", fields: {} } }),
    });
    render(
      <AuthProvider>
        <MemoryRouter initialEntries={["/organisations/7"]}>
          <Routes>
            <Route path="/organisations/:id" element={<OrganisationPage />} />
          </Routes>
        </MemoryRouter>
      </AuthProvider>,
    );
    expect(await screen.findByRole("alert")).toHaveTextContent("That was not found (it may have been removed, or it isn't yours).");
    expect(screen.queryByRole("navigation", { name: "Organisation sections" })).toBeNull();
  });
});

describe("members", () => {
  it("an admin sets a cap in credits (sent as micro-credits), a steward flag, and sees the server's error at the field", async () => {
    let patches = 0;
    const { calls } = renderOrg("ada", "admin", {
      "PATCH /api/v1/organisations/7/members/bob/": (call) => {
        patches += 1;
        if (patches === 1)
          return json(400, { error: { code: "invalid", message: "invalid", fields: { monthly_cap_micros: ["Ensure this value is less than or equal to 1000000000000."] } } });
        return json(200, { ...MEMBERS[1], ...(call.body as object) });
      },
    });
    const card = await screen.findByTestId("member-bob");
    const user = userEvent.setup();
    const cap = within(card).getByLabelText("Monthly cap (credits)");
    expect(cap).toHaveValue("250.00");
    await user.clear(cap);
    await user.type(cap, "12,5x");
    await user.click(within(card).getByRole("button", { name: "Save" }));
    expect(within(card).getByText(/An amount in credits/)).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PATCH")).toHaveLength(0);

    await user.clear(cap);
    await user.type(cap, "99999999");
    await user.click(within(card).getByRole("button", { name: "Save" }));
    expect(await within(card).findByText(/less than or equal to/)).toBeInTheDocument();
    expect(cap).toHaveAttribute("aria-invalid", "true");

    await user.clear(cap);
    await user.type(cap, "12.5");
    await user.click(within(card).getByLabelText(/Data steward/));
    await user.click(within(card).getByRole("button", { name: "Save" }));
    await waitFor(() => expect(patches).toBe(2));
    expect(calls.filter((c) => c.method === "PATCH")[1]!.body).toEqual({ is_steward: false, monthly_cap_micros: 12_500_000 });
  });

  it("an empty cap is no cap of their own (null), and an admin adds a member by username", async () => {
    const { calls } = renderOrg("ada", "admin", {
      "PATCH /api/v1/organisations/7/members/bob/": (call) => json(200, { ...MEMBERS[1], ...(call.body as object) }),
      "POST /api/v1/organisations/7/members/": () => json(201, { username: "cleo", role: "member", created_at: "2026-12-01T00:00:00Z" }),
    });
    const card = await screen.findByTestId("member-bob");
    const user = userEvent.setup();
    await user.clear(within(card).getByLabelText("Monthly cap (credits)"));
    await user.click(within(card).getByRole("button", { name: "Save" }));
    await waitFor(() => expect(calls.some((c) => c.method === "PATCH")).toBe(true));
    expect(calls.find((c) => c.method === "PATCH")!.body).toEqual({ monthly_cap_micros: null });

    await user.type(screen.getByLabelText("Username"), "cleo");
    await user.click(screen.getByRole("button", { name: "Add member" }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST")).toBe(true));
    expect(calls.find((c) => c.method === "POST")!.body).toEqual({ username: "cleo", role: "member" });
  });
});

describe("pool settings", () => {
  it("checks the fields before sending, PATCHes only what changed, and shows the server's field errors beside the fields", async () => {
    let answer: Handler = () =>
      json(400, {
        error: {
          code: "invalid",
          message: "invalid",
          fields: { fetch_networks: { "1": ["10.30.0.0/16 overlaps a network the server keeps for itself."] }, "output_store.bucket": ["no such bucket"] },
        },
      });
    const { calls } = renderOrg("ada", "admin", { "PATCH /api/v1/organisations/7/pool/": (call) => answer(call) }, "pool");
    const networks = await screen.findByLabelText(/Networks inputs may be fetched from/);
    expect(networks).toHaveValue("10.20.0.0/16");
    const user = userEvent.setup();
    await user.type(networks, "\n10.30.0.1/16");
    await user.click(screen.getByRole("button", { name: "Save pool settings" }));
    expect(screen.getByText(/Line 2: “10.30.0.1\/16” has host bits set/)).toBeInTheDocument();
    expect(networks).toHaveAttribute("aria-invalid", "true");
    expect(calls.filter((c) => c.method === "PATCH")).toHaveLength(0);

    await user.clear(networks);
    await user.type(networks, "10.20.0.0/16\n10.30.0.0/16");
    await user.type(screen.getByLabelText("Endpoint URL"), "https://s3.example.org");
    await user.type(screen.getByLabelText("Bucket"), "outputs");
    await user.click(screen.getByLabelText(/Airlock/));
    await user.click(screen.getByRole("button", { name: "Save pool settings" }));
    await waitFor(() => expect(calls.filter((c) => c.method === "PATCH")).toHaveLength(1));
    expect(calls.find((c) => c.method === "PATCH")!.body).toEqual({
      fetch_networks: ["10.20.0.0/16", "10.30.0.0/16"],
      output_store: { endpoint_url: "https://s3.example.org", bucket: "outputs", prefix: "", region: "" },
      airlock: true,
    });
    expect(await screen.findByText("“10.30.0.0/16”: 10.30.0.0/16 overlaps a network the server keeps for itself.")).toBeInTheDocument();
    expect(screen.getByLabelText("Bucket")).toHaveAttribute("aria-invalid", "true");
    expect(screen.getByText("no such bucket")).toBeInTheDocument();

    answer = (call) => json(200, { ...asApiSettings(SETTINGS), ...(call.body as object) });
    await user.clear(screen.getByLabelText("Bucket"));
    await user.type(screen.getByLabelText("Bucket"), "pool-outputs");
    await user.click(screen.getByRole("button", { name: "Save pool settings" }));
    expect(await screen.findByText(/The pool's settings are saved/)).toBeInTheDocument();
  });

  it("shows a member the settings, not to change", async () => {
    renderOrg("carl", "member", {}, "pool");
    expect(await screen.findByLabelText(/Networks inputs may be fetched from/)).toBeDisabled();
    expect(screen.queryByRole("button", { name: "Save pool settings" })).toBeNull();
    expect(screen.getByText(/Only the organisation's admins change these/)).toBeInTheDocument();
  });
});

describe("hosts", () => {
  it("lists the pool's machines and gives an admin a host token once, with a copy button and the command", async () => {
    const { calls } = renderOrg(
      "ada",
      "admin",
      {
        "GET /api/v1/hosts/": () =>
          json(200, page([{ id: 5, name: "ward-3", cpus: 16, memory_mb: 65536, status: "online", gpus: [], cpu_core_hour_micros: 0, memory_gb_hour_micros: 0, gpu_hour_micros: 0 }])),
        "POST /api/v1/organisations/7/host-tokens/": () => json(201, { token: "cpp_secret123", expires_at: "2026-12-09T00:00:00Z" }),
      },
      "hosts",
    );
    const table = await screen.findByTestId("pool-hosts");
    expect(within(table).getByRole("link", { name: "ward-3" })).toHaveAttribute("href", "/hosts/5");
    expect(table).toHaveTextContent("16 cores · 64 GB");
    expect(calls.find((c) => c.url.startsWith("/api/v1/hosts/"))!.url).toBe("/api/v1/hosts/?pool=7");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Create a host token" }));
    const shown = await screen.findByTestId("host-token");
    expect(within(shown).getByLabelText("Host token")).toHaveTextContent("cpp_secret123");
    expect(within(shown).getByRole("button", { name: "Copy token" })).toBeInTheDocument();
    expect(within(shown).getByLabelText("Join command")).toHaveTextContent(
      `curl -X POST https://cp.example.org/api/v1/my/hosts/HOST_ID/pool/ -H "Authorization: Token YOUR_API_TOKEN" -H "Content-Type: application/json" -d '{"token": "cpp_secret123"}'`,
    );
    expect(shown).toHaveTextContent("It is shown only now");
  });

  it("gives a member no token button", async () => {
    renderOrg("carl", "member", { "GET /api/v1/hosts/": () => json(200, page([])) }, "hosts");
    expect(await screen.findByText("No machines in the pool yet.")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /host token/ })).toBeNull();
  });
});

describe("the organisation's wallet", () => {
  it("an admin sees the balances and buys credits for the organisation, with an Idempotency-Key", async () => {
    const { calls } = renderOrg(
      "ada",
      "admin",
      {
        "GET /api/v1/organisations/7/wallet/": () => json(200, { balance_micros: 1_500_000_000, held_micros: 2_000_000, available_micros: 1_498_000_000 }),
        "GET /api/v1/organisations/7/wallet/me/": () => json(200, { spent_micros: 0, cap_micros: null }),
        "GET /api/v1/organisations/7/wallet/transactions/": () =>
          json(200, page([{ id: 3, created_at: "2026-12-01T10:00:00Z", kind: "capture", amount_micros: -1_250_000, memo: "", job_id: 42, member: 2, member_username: "bob", by_username: null, transaction_id: 9 }])),
        "POST /api/v1/organisations/7/wallet/payments/": () => json(201, { id: 9, amount_micros: 100_000_000, status: "succeeded", provider: "demo", client_secret: null }),
      },
      "wallet",
    );
    expect(await screen.findByTestId("org-balances")).toHaveTextContent("1,500.00 cr");
    const tx = await screen.findByTestId("org-transactions");
    expect(tx).toHaveTextContent("Usage charge");
    expect(tx).toHaveTextContent("bob");
    expect(within(tx).getByRole("link", { name: "job #42" })).toHaveAttribute("href", "/jobs/42");
    expect(within(tx).getByTitle("-1,250,000 micro-credits")).toHaveTextContent("-1.25");
    expect(screen.getByTestId("my-month")).toHaveTextContent("You have no cap of your own");
    const user = userEvent.setup();
    await user.clear(screen.getByLabelText("Amount (credits)"));
    await user.type(screen.getByLabelText("Amount (credits)"), "100");
    await user.click(screen.getByRole("button", { name: "Buy credits" }));
    expect(await screen.findByText("100.00 cr added (demo payment).")).toBeInTheDocument();
    const post = calls.find((c) => c.method === "POST")!;
    expect(post.url).toBe("/api/v1/organisations/7/wallet/payments/");
    expect(post.body).toEqual({ amount_micros: 100_000_000 });
    expect(post.headers.get("Idempotency-Key")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("a member sees their month's spend against their cap, and not the organisation's balance", async () => {
    const { calls } = renderOrg(
      "bob",
      "member",
      { "GET /api/v1/organisations/7/wallet/me/": () => json(200, { month: "2026-12", spent_micros: 200_000_000, cap_micros: 250_000_000 }) },
      "wallet",
    );
    expect(await screen.findByTestId("my-month")).toHaveTextContent("You have spent 200.00 cr of your 250.00 cr monthly cap");
    expect(screen.getByTestId("my-month")).toHaveTextContent("50 credits left.");
    expect(screen.getByRole("progressbar", { name: "Your month's spending against your cap" })).toHaveAttribute("value", "200000000");
    expect(calls.some((c) => c.url === "/api/v1/organisations/7/wallet/")).toBe(false);
    expect(screen.queryByRole("button", { name: "Buy credits" })).toBeNull();
  });
});

describe("reports and audit", () => {
  it("shows the report per member with its figures in credits and time, and a CSV link for the same period", async () => {
    const { calls } = renderOrg(
      "ada",
      "admin",
      {
        "GET /api/v1/organisations/7/reports/": () =>
          json(200, {
            from: "2026-12-01",
            to: "2026-12-08",
            group_by: "member",
            rows: [{ member: 2, username: "bob", jobs: 3, cpu_seconds: "5400", gross_charges_micros: 0, platform_fees_micros: 0, refunds_micros: 0 }],
            totals: { jobs: 3, cpu_seconds: 5400, gross_charges_micros: 0, platform_fees_micros: 0, refunds_micros: 0 },
          }),
      },
      "reports",
    );
    const table = await screen.findByTestId("org-report");
    expect(within(table).getAllByRole("columnheader").map((h) => h.textContent)).toEqual(["Member", "Jobs", "CPU time", "Charged", "Platform fee", "Refunded"]);
    expect(within(table).getAllByRole("row")[1]).toHaveTextContent("bob");
    expect(within(table).getAllByRole("row")[1]).toHaveTextContent("0.00 cr");
    const first = calls.find((c) => c.url.startsWith("/api/v1/organisations/7/reports/"))!;
    const params = new URL(first.url, "http://x").searchParams;
    expect(params.get("group_by")).toBe("member");
    expect(params.get("from")).toMatch(/^\d{4}-\d{2}-01$/);
    const csv = screen.getByRole("link", { name: "Download CSV" });
    expect(csv.getAttribute("href")).toContain(`from=${params.get("from")}`);
    expect(csv.getAttribute("href")).toContain("group_by=member&format=csv");
    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText("Per"), "host");
    await waitFor(() => expect(calls.some((c) => c.url.includes("group_by=host"))).toBe(true));
  });

  it("pages the audit trail, filters it, and links the CSV of the same filters", async () => {
    const event = (id: number) => ({ id, at: "2026-12-01T10:00:00Z", kind: "job.submitted", actor: "bob", job_id: 42, host_id: null, detail: { name: "train", code_sha256: "ab".repeat(32) } });
    const { calls } = renderOrg(
      "ada",
      "admin",
      {
        "GET /api/v1/organisations/7/audit/": (call) => {
          const p = new URL(call.url, "http://x").searchParams;
          return json(200, { count: 60, next: p.get("page") === "2" ? null : "next", previous: p.get("page") === "2" ? "prev" : null, results: [event(p.get("page") === "2" ? 10 : 60)] });
        },
      },
      "audit",
    );
    const table = await screen.findByTestId("audit");
    expect(table).toHaveTextContent("Job submitted");
    expect(table).toHaveTextContent("bob");
    expect(table).toHaveTextContent("name: train");
    expect(screen.getByText(/Page 1 · 60 in all/)).toBeInTheDocument();
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Next" }));
    await waitFor(() => expect(calls.some((c) => c.url.includes("page=2"))).toBe(true));
    await user.selectOptions(screen.getByLabelText("What"), "output.released");
    await user.type(screen.getByLabelText("Job"), "x");
    await user.click(screen.getByRole("button", { name: "Show" }));
    expect(screen.getByText("A job number, such as 42.")).toBeInTheDocument();
    await user.clear(screen.getByLabelText("Job"));
    await user.type(screen.getByLabelText("Job"), "42");
    await user.click(screen.getByRole("button", { name: "Show" }));
    await waitFor(() => expect(calls.some((c) => c.url.includes("kind=output.released") && c.url.includes("job=42") && c.url.includes("page=1"))).toBe(true));
    expect(screen.getByRole("link", { name: "Download CSV" })).toHaveAttribute("href", "/api/v1/organisations/7/audit/?kind=output.released&job=42&format=csv");
  });
});

describe("releases", () => {
  const request = { id: 11, job_id: 42, name: "results/summary.csv", size: 2048, sha256: "c2".repeat(32), status: "requested", requested_by: "carl", requested_at: "2026-12-01T10:00:00Z" };

  it("a steward approves with a note, and a refusal needs one", async () => {
    let pending = [request];
    const { calls } = renderOrg(
      "bob",
      "member",
      {
        "GET /api/v1/organisations/7/releases/": () => json(200, page(pending)),
        "POST /api/v1/organisations/7/releases/11/approve/": () => {
          pending = [];
          return json(200, { ...request, status: "approved" });
        },
      },
      "releases",
    );
    const list = await screen.findByTestId("releases");
    expect(list).toHaveTextContent("results/summary.csv");
    expect(list).toHaveTextContent("of carl");
    expect(within(list).getByRole("link", { name: "job #42" })).toHaveAttribute("href", "/jobs/42");
    const user = userEvent.setup();
    await user.click(within(list).getByRole("button", { name: "Refuse" }));
    expect(within(list).getByText(/Say why the output may not leave/)).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST")).toHaveLength(0);
    await user.type(within(list).getByLabelText("Note on results/summary.csv"), "aggregate only, fine");
    await user.click(within(list).getByRole("button", { name: "Approve release" }));
    expect(await screen.findByText("No outputs are waiting for a decision.")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "POST")!.body).toEqual({ note: "aggregate only, fine" });
    expect(calls[calls.length - 1]!.url).toBe("/api/v1/organisations/7/releases/?status=requested");
  });

  it("an admin who is not a steward reads the requests but decides none", async () => {
    renderOrg("ada", "admin", { "GET /api/v1/organisations/7/releases/": () => json(200, page([request])) }, "releases");
    expect(await screen.findByTestId("releases")).toHaveTextContent("Release requested: waiting for a data steward");
    expect(screen.queryByRole("button", { name: "Approve release" })).toBeNull();
    expect(screen.getByText(/Only data stewards decide/)).toBeInTheDocument();
  });
});
