import { render, screen, waitFor } from "@testing-library/react";
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

const hosts = {
  count: 1,
  next: null,
  previous: null,
  results: [{ id: 5, name: "lab-1", arch: "x86_64", os: "linux", cpus: 8, memory_mb: 16384, status: "online", cpu_core_hour_micros: 50_000, memory_gb_hour_micros: 10_000, gpu_hour_micros: 0 }],
};

function renderRun(quote: (call: Call) => Response, submit?: (call: Call) => Response) {
  const mock = mockFetch({
    "GET /api/v1/hosts/": () => json(200, hosts),
    "POST /api/v1/quotes/": quote,
    "POST /api/v1/jobs/": submit ?? (() => json(201, { id: 99, status: "queued" })),
  });
  render(
    <MemoryRouter initialEntries={["/run"]}>
      <Routes>
        <Route path="/run" element={<RunPage />} />
        <Route path="/jobs/:id" element={<p>job page</p>} />
      </Routes>
    </MemoryRouter>,
  );
  return mock;
}

const quotes = (calls: Call[]) => calls.filter((c) => c.url === "/api/v1/quotes/");
const okQuote = () => json(200, { estimate_micros: 1_234_500, hosts: [{ host: 5, name: "lab-1", estimate_micros: 1_234_500 }] });

describe("the Run form's live quote", () => {
  it("asks for a quote once the form settles and shows the estimate", async () => {
    // given
    const { calls } = renderRun(okQuote);
    // then one quote for the default spec, shown when it arrives
    expect(await screen.findByTestId("quote-estimate")).toHaveTextContent("1.23 cr");
    expect(quotes(calls)).toHaveLength(1);
    expect(quotes(calls)[0]!.body).toEqual({
      cpus: 1,
      memory_mb: 1024,
      gpus: 0,
      timeout_seconds: 600,
      max_cost_micros: 1_000_000,
      inputs_bytes: 0,
    });
    expect(screen.getByTestId("quote")).toHaveTextContent("1 machine fits; cheapest: lab-1.");
  });

  it("debounces typing: one quote for a burst of edits", async () => {
    const user = userEvent.setup();
    const { calls } = renderRun(okQuote);
    await screen.findByTestId("quote-estimate");
    // when several keystrokes change the spec quickly
    const memory = screen.getByLabelText("Memory (GB)");
    await user.clear(memory);
    await user.type(memory, "2.5");
    const timeout = screen.getByLabelText("Timeout (minutes)");
    await user.clear(timeout);
    await user.type(timeout, "30");
    // then one more quote, with the final values
    await waitFor(() => expect(quotes(calls)).toHaveLength(2), { timeout: 2000 });
    expect(quotes(calls)[1]!.body).toMatchObject({ memory_mb: 2560, timeout_seconds: 1800 });
    // and editing the code asks for no quote: it does not change the price
    await user.type(screen.getByLabelText("Python code"), "# more");
    await new Promise((r) => setTimeout(r, 700));
    expect(quotes(calls)).toHaveLength(2);
  });

  it("shows the quote's field errors next to the field", async () => {
    // given the server says the memory does not fit anywhere
    renderRun(() =>
      json(400, { error: { code: "invalid", message: "memory_mb: no host has that much", fields: { memory_mb: ["No online host has 1024 MB free."] } } }),
    );
    // then
    const memory = screen.getByLabelText("Memory (GB)");
    await waitFor(() => expect(memory).toHaveAccessibleDescription("No online host has 1024 MB free."));
    expect(memory).toHaveAttribute("aria-invalid", "true");
  });

  it("submits with an Idempotency-Key, reusing it only when the outcome was unknown", async () => {
    const user = userEvent.setup();
    const answers = [
      () => json(503, {}),
      () => json(402, { error: { code: "insufficient_credits", message: "not enough credits: 500000 micro-credits left, 5000000000 needed", fields: {} } }),
      () => json(201, { id: 99, status: "queued" }),
    ];
    const { calls } = renderRun(okQuote, () => answers.shift()!());
    await screen.findByTestId("quote-estimate");
    const run = screen.getByRole("button", { name: "Run" });
    // when: a 503 (did it happen?), a retry that gets a definite 402, then a third try
    await user.click(run);
    await screen.findByText("The server is unavailable; try again shortly.");
    await user.click(run);
    // the banner says it in credits, not in micro-credits
    await screen.findByText("Not enough credits: you have 0.50 credits; this needs 5,000 credits.");
    await user.click(run);
    // then
    await screen.findByText("job page");
    const posts = calls.filter((c) => c.url === "/api/v1/jobs/");
    expect(posts[2]!.body).toEqual({
      code: expect.stringContaining("print("),
      entrypoint: "main.py",
      requirements: [],
      cpus: 1,
      memory_mb: 1024,
      gpus: 0,
      timeout_seconds: 600,
      max_cost_micros: 1_000_000,
      placement: "auto",
    });
    const keys = posts.map((c) => c.headers.get("Idempotency-Key"));
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[1]);
  });
});

describe("naming the job", () => {
  it("sends the name typed in, and none when it is left empty", async () => {
    const user = userEvent.setup();
    const { calls } = renderRun(okQuote);
    await screen.findByTestId("quote-estimate");
    expect(screen.getByLabelText(/Job name/)).toHaveAttribute("placeholder", "main.py");
    await user.type(screen.getByLabelText(/Job name/), "resnet sweep");
    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    const post = calls.find((c) => c.url === "/api/v1/jobs/")!;
    expect((post.body as { name?: string }).name).toBe("resnet sweep");
  });
});

describe("the Run form's own checks", () => {
  it("names every problem at once, before asking the server, and sends nothing", async () => {
    // given
    const user = userEvent.setup();
    const { calls } = renderRun(okQuote);
    await user.clear(screen.getByLabelText("Python code"));
    await user.clear(screen.getByLabelText(/^Entrypoint/));
    await user.type(screen.getByLabelText(/^Entrypoint/), "run.sh");
    await user.type(screen.getByLabelText(/^Requirements/), "-e git+https://example.com/x.git");
    await user.clear(screen.getByLabelText("Cost cap (credits)"));
    await user.type(screen.getByLabelText("Cost cap (credits)"), "abc");
    // when
    await user.click(screen.getByRole("button", { name: "Run" }));
    // then the summary lists all four, each field says its own, and no job was sent
    const summary = await screen.findByText(/Fix these 4 before running/);
    const box = summary.closest("[role=alert]")!;
    expect(box).toHaveTextContent("File to run: The file to run must end in .py.");
    expect(box).toHaveTextContent("Requirements: One package specifier per line");
    expect(box).toHaveTextContent("Code: Write the code to run");
    expect(box).toHaveTextContent("Cost cap: A cost cap in credits");
    expect(screen.getByLabelText("Cost cap (credits)")).toHaveAttribute("aria-invalid", "true");
    expect(calls.filter((c) => c.url === "/api/v1/jobs/")).toHaveLength(0);
  });

  it("says which code runs when files are uploaded", async () => {
    const user = userEvent.setup();
    renderRun(okQuote);
    const input = screen.getByLabelText(/^Files/) as HTMLInputElement;
    await user.upload(input, new File(["print(1)"], "main.py", { type: "text/x-python" }));
    expect(await screen.findByTestId("code-source")).toHaveTextContent("main.py from your uploaded files runs. The editor's code is not sent.");
  });

  it("explains why no machine fits, from the catalog", async () => {
    const limited = { ...hosts, results: [{ ...hosts.results[0], is_accepting_jobs: true, is_draining: false, max_job_cpus: 4, max_job_memory_mb: 4096, max_job_gpus: 0, max_job_timeout_seconds: 3600 }] };
    mockFetch({
      "GET /api/v1/hosts/": () => json(200, limited),
      "POST /api/v1/quotes/": () => json(200, { estimate_micros: null, hosts: [] }),
    });
    const user = userEvent.setup();
    render(
      <MemoryRouter initialEntries={["/run"]}>
        <Routes>
          <Route path="/run" element={<RunPage />} />
        </Routes>
      </MemoryRouter>,
    );
    await user.clear(screen.getByLabelText("CPU cores"));
    await user.type(screen.getByLabelText("CPU cores"), "16");
    expect(await screen.findByTestId("why-none-fits", {}, { timeout: 3000 })).toHaveTextContent("You asked for 16 cores; the most any machine takes per job is 4.");
  });
});
