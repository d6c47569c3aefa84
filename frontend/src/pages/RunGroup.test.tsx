import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { describe, expect, it, vi } from "vitest";
import { taskArgumentsRead } from "../lib/groupSpec";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { RunPage } from "./Run";

// CodeMirror needs layout APIs jsdom lacks; a textarea stands in for it here.
vi.mock("../components/CodeEditor", () => ({
  CodeEditor: ({ value, onChange, label }: { value: string; onChange: (v: string) => void; label: string }) => (
    <textarea aria-label={label} value={value} onChange={(e) => onChange(e.target.value)} />
  ),
}));

const SHA = "ab".repeat(32);

function renderRun(create: (call: Call) => Response = () => json(201, { id: 7, status: "running" }), path = "/run?mode=group") {
  const mock = mockFetch({
    "GET /api/v1/hosts/": () => json(200, { count: 0, next: null, previous: null, results: [] }),
    "POST /api/v1/quotes/": () => json(200, { estimate_micros: 100_000, hosts: [{ host: 5, name: "lab-1", estimate_micros: 100_000 }] }),
    "POST /api/v1/job-groups/": create,
    "POST /api/v1/jobs/": () => json(201, { id: 99, status: "queued" }),
  });
  render(
    <MemoryRouter initialEntries={[path]}>
      <Routes>
        <Route path="/run" element={<RunPage />} />
        <Route path="/groups/:id" element={<p>group page</p>} />
        <Route path="/jobs/:id" element={<p>job page</p>} />
      </Routes>
    </MemoryRouter>,
  );
  return mock;
}

const creates = (calls: Call[]) => calls.filter((c) => c.method === "POST" && c.url === "/api/v1/job-groups/");

/** fireEvent.change, for text with braces that user.type would read as key names. */
function typeText(element: HTMLElement, text: string) {
  fireEvent.change(element, { target: { value: text } });
}

describe("the Run page's group mode", () => {
  it("sends the job's fields as the template, one task per line, the caps and an Idempotency-Key, then opens the group", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    const { calls } = renderRun();
    expect(screen.getByRole("heading", { name: "Run over inputs" })).toBeInTheDocument();
    expect(screen.getByRole("radio", { name: /^Run over inputs/ })).toBeChecked();
    typeText(screen.getByLabelText(/^Task arguments/), '{"seed": 1}\n\n{"seed": 2}\n"c.csv"\n');
    expect(screen.getByTestId("arguments-summary")).toHaveTextContent("3 tasks, one per line.");
    // the per-task cap is the job form's; the group's cap sits beside it
    typeText(screen.getByLabelText("Cost cap per task (credits)"), "0.5");
    typeText(screen.getByLabelText("Group cost cap (credits)"), "2");
    typeText(screen.getByLabelText("Tasks at once"), "2");
    // an input by URL is every task's
    await user.click(screen.getByRole("button", { name: "Add by URL" }));
    const row = screen.getByTestId("url-input");
    typeText(within(row).getByLabelText("Path in /inputs"), "model.bin");
    typeText(within(row).getByLabelText("URL (https)"), "https://data.example.org/model.bin");
    typeText(within(row).getByLabelText("sha256 of the file"), SHA);
    await screen.findByTestId("quote-group");
    expect(screen.getByTestId("quote-group")).toHaveTextContent("3 tasks: at most 0.30 cr in all");
    await user.click(screen.getByRole("button", { name: "Run 3 tasks" }));
    await screen.findByText("group page");
    const [post] = creates(calls);
    expect(post!.body).toEqual({
      code: expect.stringContaining("print("),
      entrypoint: "main.py",
      requirements: [],
      cpus: 1,
      memory_mb: 1024,
      gpus: 0,
      timeout_seconds: 600,
      placement: "auto",
      task_max_cost_micros: 500_000,
      max_cost_micros: 2_000_000,
      max_parallel: 2,
      host_fault_retries: 3,
      error_retries: 0,
      shared_inputs: [{ path: "model.bin", url: "https://data.example.org/model.bin", sha256: SHA }],
      inputs: [{ argument: { seed: 1 } }, { argument: { seed: 2 } }, { argument: "c.csv" }],
    });
    expect(post!.headers.get("Idempotency-Key")).toMatch(/^[0-9a-f-]{36}$/);
    expect(calls.some((c) => c.url === "/api/v1/jobs/")).toBe(false);
  });

  it("sends count: N instead of arguments, and the retries", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    const { calls } = renderRun();
    await user.click(screen.getByRole("radio", { name: /A number of tasks/ }));
    await user.clear(screen.getByLabelText("Number of tasks"));
    await user.type(screen.getByLabelText("Number of tasks"), "5");
    await user.click(screen.getByText("Advanced: retries"));
    await user.clear(screen.getByLabelText("Retries after a script error"));
    await user.type(screen.getByLabelText("Retries after a script error"), "1");
    await user.click(screen.getByRole("button", { name: "Run 5 tasks" }));
    await screen.findByText("group page");
    const body = creates(calls)[0]!.body as Record<string, unknown>;
    expect(body).toMatchObject({ count: 5, error_retries: 1, host_fault_retries: 3, max_cost_micros: 10_000_000, task_max_cost_micros: 1_000_000 });
    expect(body).not.toHaveProperty("inputs");
    expect(body).not.toHaveProperty("shared_inputs");
  });

  it("reads a dropped .jsonl file, and a JSON array as one task per item", async () => {
    renderRun();
    const file = new File(['{"a": 1}\n{"a": 2}\n'], "tasks.jsonl", { type: "application/x-ndjson" });
    fireEvent.drop(screen.getByTestId("arguments-drop"), { dataTransfer: { files: [file] } });
    await waitFor(() => expect(screen.getByTestId("arguments-summary")).toHaveTextContent("2 tasks, one per line."));
    expect(screen.getByLabelText(/^Task arguments/)).toHaveValue('{"a": 1}\n{"a": 2}\n');
    typeText(screen.getByLabelText(/^Task arguments/), '[1, [2, 3], {"x": null}]');
    expect(screen.getByTestId("arguments-summary")).toHaveTextContent("3 tasks, one per item of the array.");
  });

  it("names the group's problems before asking the server, and sends nothing", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    const { calls } = renderRun();
    typeText(screen.getByLabelText(/^Task arguments/), '{"seed": 1}\n{seed: 2}\n');
    await user.clear(screen.getByLabelText("Group cost cap (credits)"));
    await user.type(screen.getByLabelText("Group cost cap (credits)"), "0.5");
    await user.clear(screen.getByLabelText("Tasks at once"));
    await user.type(screen.getByLabelText("Tasks at once"), "0");
    await user.click(screen.getByRole("button", { name: "Run the tasks" }));
    const box = (await screen.findByText(/Fix these 3 before running/)).closest("[role=alert]")!;
    expect(box).toHaveTextContent('Task arguments: Line 2 is not JSON: each line is one task\'s argument, such as {"seed": 1} or "a.csv".');
    expect(box).toHaveTextContent("Group cost cap: At least the cost cap per task (1 credit), so that one task can start.");
    expect(box).toHaveTextContent("Tasks at once: A whole number from 1 to 500.");
    expect(screen.getByLabelText("Group cost cap (credits)")).toHaveAttribute("aria-invalid", "true");
    expect(creates(calls)).toHaveLength(0);
  });

  it("shows the server's refusals at their fields, in sentences, a task's with its index", { timeout: 15000 }, async () => {
    const user = userEvent.setup();
    renderRun(() =>
      json(400, {
        error: {
          code: "invalid",
          message: "some fields are invalid",
          fields: {
            "inputs[1].argument": ["at most 65536 bytes as JSON: put bigger data in an input"],
            task_max_cost_micros: ["at least 60000"],
            max_parallel: ["Ensure this value is less than or equal to 500."],
          },
        },
      }),
    );
    typeText(screen.getByLabelText(/^Task arguments/), "1\n2\n");
    await user.click(screen.getByRole("button", { name: "Run 2 tasks" }));
    await waitFor(() =>
      expect(screen.getByLabelText(/^Task arguments/)).toHaveAccessibleDescription(expect.stringContaining("Task #1: at most 64.0 KB as JSON: put bigger data in an input")),
    );
    expect(screen.getByLabelText("Cost cap per task (credits)")).toHaveAccessibleDescription(expect.stringContaining("at least 0.06 credits"));
    expect(screen.getByLabelText("Tasks at once")).toHaveAccessibleDescription(expect.stringContaining("Ensure this value is less than or equal to 500."));
    // every field was shown where it belongs: no banner repeats them
    expect(screen.queryByText("Some of what you entered needs fixing: some fields are invalid.")).toBeNull();
  });

  it("says a 402 for the first tasks' holds in credits", async () => {
    const user = userEvent.setup();
    renderRun(() =>
      json(402, {
        error: {
          code: "insufficient_credits",
          message: "the first 2 tasks' holds need 2000000 micro-credits; 500000 are available",
          fields: { available_micros: 500000, required_micros: 2000000 },
        },
      }),
    );
    typeText(screen.getByLabelText(/^Task arguments/), "1\n2\n");
    await user.click(screen.getByRole("button", { name: "Run 2 tasks" }));
    expect(await screen.findByText("Not enough credits: you have 0.50 credits; the first 2 tasks' holds need 2 credits.")).toBeInTheDocument();
  });

  it("is a plain job again in job mode", async () => {
    const user = userEvent.setup();
    const { calls } = renderRun(undefined, "/run");
    expect(screen.getByRole("heading", { name: "Run a job" })).toBeInTheDocument();
    expect(screen.queryByLabelText(/^Task arguments/)).toBeNull();
    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    expect(creates(calls)).toHaveLength(0);
  });
});

describe("reading task arguments", () => {
  it("takes JSON Lines and a JSON array, and refuses what the server would", () => {
    expect(taskArgumentsRead('1\n"two"\n{"three": 3}')).toEqual({ ok: true, arguments: [1, "two", { three: 3 }], format: "lines" });
    expect(taskArgumentsRead("[1, 2]")).toEqual({ ok: true, arguments: [1, 2], format: "array" });
    // two arrays on two lines are two tasks
    expect(taskArgumentsRead("[1, 2]\n[3]")).toEqual({ ok: true, arguments: [[1, 2], [3]], format: "lines" });
    expect(taskArgumentsRead("  ")).toMatchObject({ ok: false });
    expect(taskArgumentsRead("[]")).toMatchObject({ ok: false, problem: expect.stringContaining("at least one") });
    expect(taskArgumentsRead(`"${"x".repeat(70_000)}"`)).toMatchObject({ ok: false, problem: expect.stringContaining("Task #0's argument is larger than 64 KB") });
    expect(taskArgumentsRead(Array.from({ length: 10_001 }, (_, i) => String(i)).join("\n"))).toMatchObject({ ok: false, problem: "At most 10,000 tasks in a group (there are 10,001)." });
  });
});
