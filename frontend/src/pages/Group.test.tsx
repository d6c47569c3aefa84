import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { GroupTask, JobGroupDetail, TaskCounts } from "../api/types";
import { parseGroupMessage } from "../lib/groupSocket";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { FakeSocket } from "../test/fakeSocket";
import { GroupPage, progressText } from "./Group";
import { GroupsPage } from "./Groups";

const zero: TaskCounts = { pending: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, timed_out: 0, budget_exhausted: 0, skipped: 0 };

const task = (index: number, status: GroupTask["status"], more: Partial<GroupTask> = {}): GroupTask => ({
  index,
  job_id: status === "pending" || status === "skipped" ? null : 100 + index,
  status,
  job_status: status === "running" ? "running" : status === "pending" || status === "skipped" ? null : status,
  exit_code: status === "succeeded" ? 0 : status === "failed" ? 3 : null,
  reason: status === "failed" ? "exit code 3" : "",
  ...more,
});

const tasks = [task(0, "succeeded"), task(1, "failed"), task(2, "running", { job_status: "preparing" }), task(3, "timed_out"), task(4, "pending")];

function groupOf(list: GroupTask[], more: Partial<JobGroupDetail> = {}): JobGroupDetail {
  const counts = { ...zero };
  for (const t of list) counts[t.status] += 1;
  return {
    id: 7,
    name: "sweep",
    status: "running",
    status_reason: "",
    count: list.length,
    counts,
    max_parallel: 2,
    open_tasks: 1,
    max_cost_micros: 10_000_000,
    task_max_cost_micros: 1_000_000,
    cost_micros: 250_000,
    host_fault_retries: 3,
    error_retries: 0,
    placement: "auto",
    requested_host: null,
    entrypoint: "main.py",
    requirements: [],
    cpus: 1,
    memory_mb: 1024,
    gpus: 0,
    timeout_seconds: 600,
    cancel_requested: false,
    created_at: "2026-05-01T10:00:00Z",
    finished_at: null,
    tasks: { count: list.length, next: null, previous: null, results: list },
    ...more,
  };
}

/** The group page at `path`, its detail answered by `detail` (the call, to read its query). */
function renderGroup(detail: (call: Call) => Response, routes: Record<string, (call: Call) => Response> = {}, path = "/groups/7") {
  const mock = mockFetch({ "GET /api/v1/job-groups/7/": detail, ...routes });
  render(
    <MemoryRouter initialEntries={[path]}>
      <Routes>
        <Route path="/groups/:id" element={<GroupPage />} />
      </Routes>
    </MemoryRouter>,
  );
  return mock;
}

const details = (calls: Call[]) => calls.filter((c) => c.url.startsWith("/api/v1/job-groups/7/?") || c.url === "/api/v1/job-groups/7/");

beforeEach(() => {
  FakeSocket.all = [];
  vi.stubGlobal("WebSocket", FakeSocket);
});

describe("the group page's grid", () => {
  it("shows every task with its status in words and a mark, each started one a link to its job", async () => {
    renderGroup(() => json(200, groupOf(tasks)));
    const grid = await screen.findByTestId("task-grid");
    const tiles = within(grid).getAllByTestId("task");
    expect(tiles.map((t) => t.dataset.status)).toEqual(["succeeded", "failed", "running", "timed_out", "pending"]);
    // words and a mark, never colour alone
    expect(tiles[0]).toHaveTextContent("#0✓ Succeeded · exit code 0");
    expect(tiles[0]).toHaveClass("task-ok");
    expect(tiles[1]).toHaveTextContent("✕ Failed · exit code 3");
    expect(tiles[1]).toHaveClass("task-bad");
    expect(tiles[3]).toHaveTextContent("✕ Timed out");
    expect(tiles[4]).toHaveTextContent("– Waiting");
    // a started task opens its job (its log and outputs); one not started is no link
    expect(within(tiles[1]!).getByRole("link")).toHaveAttribute("href", "/jobs/101");
    expect(within(tiles[1]!).getByRole("link")).toHaveAccessibleName("Task #1: Failed, exit code 3");
    expect(within(tiles[2]!).getByRole("link")).toHaveAccessibleName("Task #2: Running, its job is preparing (installing requirements)");
    expect(within(tiles[4]!).queryByRole("link")).toBeNull();
    // progress and cost so far
    expect(screen.getByTestId("group-progress")).toHaveTextContent(
      "3 of 5 tasks ended: 1 succeeded, 1 failed, 1 stopped: the time limit was reached; 1 running, 1 waiting to start.",
    );
    expect(screen.getByRole("progressbar", { name: "Tasks ended" })).toHaveAttribute("value", "3");
    expect(screen.getByTestId("group-cost")).toHaveTextContent("0.25 cr of the group's cap 10.00 cr");
    expect(screen.getByTestId("group-status")).toHaveTextContent("Running");
  });

  it("filters by status: the API is asked for those tasks, the button says which is shown", async () => {
    const user = userEvent.setup();
    const { calls } = renderGroup((call) => {
      const status = new URL(call.url, "http://x").searchParams.get("status");
      const shown = status ? tasks.filter((t) => t.status === status) : tasks;
      return json(200, { ...groupOf(tasks), tasks: { count: shown.length, next: null, previous: null, results: shown } });
    });
    await screen.findByTestId("task-grid");
    const filter = screen.getByRole("group", { name: "Show tasks" });
    expect(within(filter).getByRole("button", { name: /^All 5/ })).toHaveAttribute("aria-pressed", "true");
    // statuses no task has are not offered
    expect(within(filter).queryByRole("button", { name: /Cancelled/ })).toBeNull();
    await user.click(within(filter).getByRole("button", { name: /Failed 1/ }));
    await waitFor(() => expect(within(screen.getByTestId("task-grid")).getAllByTestId("task")).toHaveLength(1));
    expect(details(calls).at(-1)!.url).toContain("status=failed");
    expect(within(filter).getByRole("button", { name: /Failed 1/ })).toHaveAttribute("aria-pressed", "true");
    expect(screen.getByRole("list", { name: "Failed tasks, by index" })).toBeInTheDocument();
  });

  it("pages through the tasks", async () => {
    const user = userEvent.setup();
    const first = Array.from({ length: 3 }, (_, i) => task(i, "succeeded"));
    const { calls } = renderGroup((call) => {
      const page = new URL(call.url, "http://x").searchParams.get("page");
      const group = groupOf(first, { count: 203, counts: { ...zero, succeeded: 203 } });
      return json(200, {
        ...group,
        tasks:
          page === "2"
            ? { count: 203, next: null, previous: "http://x/?page=1", results: [task(200, "succeeded")] }
            : { count: 203, next: "http://x/?page=2", previous: null, results: first },
      });
    });
    await screen.findByText("Tasks 1–200 of 203");
    await user.click(screen.getByRole("button", { name: "Next" }));
    expect(await screen.findByText("Tasks 201–203 of 203")).toBeInTheDocument();
    expect(details(calls).at(-1)!.url).toContain("page=2");
    expect(details(calls).at(-1)!.url).toContain("page_size=200");
    expect(within(screen.getByTestId("task-grid")).getByTestId("task")).toHaveTextContent("#200");
  });
});

describe("the group page live", () => {
  it("shows a socket push's progress and cost at once, then reads the tasks again", async () => {
    let current = groupOf(tasks);
    const { calls } = renderGroup(() => json(200, current));
    await screen.findByTestId("task-grid");
    const socket = FakeSocket.all[0]!;
    expect(socket.url).toMatch(/\/ws\/job-groups\/7\/$/);
    act(() => socket.open());
    await waitFor(() => expect(screen.getByText("Live.")).toBeInTheDocument());
    const before = details(calls).length;
    // when task 2 succeeds: the server's truth changes, then the push arrives
    const after = [tasks[0]!, tasks[1]!, task(2, "succeeded"), tasks[3]!, tasks[4]!];
    current = groupOf(after, { cost_micros: 400_000 });
    act(() =>
      socket.send({
        type: "group.progress",
        group_id: 7,
        status: "running",
        status_reason: "",
        count: 5,
        counts: { ...zero, succeeded: 2, failed: 1, timed_out: 1, pending: 1 },
        cost_micros: 400_000,
        open_tasks: 0,
        cancel_requested: false,
      }),
    );
    // the counts and the cost from the push
    expect(screen.getByTestId("group-progress")).toHaveTextContent("4 of 5 tasks ended: 2 succeeded");
    expect(screen.getByTestId("group-cost")).toHaveTextContent("0.40 cr");
    // and the grid from the read it rang for
    await waitFor(() => expect(within(screen.getByTestId("task-grid")).getAllByTestId("task")[2]).toHaveTextContent("Succeeded"));
    expect(details(calls).length).toBeGreaterThan(before);
  });

  it("stops reconnecting once the group has ended", async () => {
    renderGroup(() => json(200, groupOf([task(0, "succeeded")], { status: "finished", status_reason: "1 succeeded", open_tasks: 0, finished_at: "2026-05-01T10:05:00Z" })));
    await screen.findByTestId("task-grid");
    expect(screen.getByTestId("group-status")).toHaveTextContent("Finished");
    act(() => FakeSocket.all[0]!.drop());
    await new Promise((r) => setTimeout(r, 50));
    expect(FakeSocket.all).toHaveLength(1);
    expect(screen.queryByRole("button", { name: "Cancel group" })).toBeNull();
  });

  it("reads the socket's progress message, and ignores others", () => {
    const [progress] = parseGroupMessage(JSON.stringify({ type: "group.progress", group_id: 7, status: "running", count: 3, counts: { succeeded: 1 }, cost_micros: 5 }));
    expect(progress).toMatchObject({ group_id: 7, status: "running", count: 3, cost_micros: 5, counts: { ...zero, succeeded: 1 } });
    expect(parseGroupMessage(JSON.stringify({ type: "job.log", offset: 0 }))).toEqual([]);
    expect(parseGroupMessage("not json")).toEqual([]);
  });
});

describe("cancelling a group", () => {
  it("asks first, then POSTs the cancel and says the running tasks are being stopped", async () => {
    const user = userEvent.setup();
    let current = groupOf(tasks);
    const { calls } = renderGroup(() => json(200, current), {
      "POST /api/v1/job-groups/7/cancel/": () => {
        current = { ...current, cancel_requested: true };
        const { tasks: _tasks, ...group } = current;
        return json(200, group);
      },
    });
    await user.click(await screen.findByRole("button", { name: "Cancel group" }));
    // the confirmation says what happens, and nothing was sent yet
    const confirm = screen.getByRole("group", { name: /Stop this group\?/ });
    expect(confirm).toHaveTextContent("No more tasks start (1 waiting is skipped) and its 1 running task is cancelled.");
    expect(calls.some((c) => c.method === "POST")).toBe(false);
    await user.click(within(confirm).getByRole("button", { name: "Yes, cancel the group" }));
    expect(await screen.findByText(/Cancel requested: no more tasks start/)).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST" && c.url === "/api/v1/job-groups/7/cancel/")).toHaveLength(1);
  });

  it("keeps it running when asked to, and says an ended group's refusal in words", async () => {
    const user = userEvent.setup();
    const { calls } = renderGroup(() => json(200, groupOf(tasks)), {
      "POST /api/v1/job-groups/7/cancel/": () => json(409, { error: { code: "group_finished", message: "the job group has already ended", fields: {} } }),
    });
    await user.click(await screen.findByRole("button", { name: "Cancel group" }));
    await user.click(screen.getByRole("button", { name: "Keep it running" }));
    expect(calls.some((c) => c.method === "POST")).toBe(false);
    await user.click(screen.getByRole("button", { name: "Cancel group" }));
    await user.click(screen.getByRole("button", { name: "Yes, cancel the group" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("The group has already ended: there is nothing left to cancel.");
  });
});

describe("the groups list", () => {
  it("links each group with its status and progress", async () => {
    const { tasks: _tasks, ...group } = groupOf(tasks);
    mockFetch({ "GET /api/v1/job-groups/": () => json(200, { count: 1, next: null, previous: null, results: [group] }) });
    render(
      <MemoryRouter initialEntries={["/groups"]}>
        <Routes>
          <Route path="/groups" element={<GroupsPage />} />
        </Routes>
      </MemoryRouter>,
    );
    expect(await screen.findByRole("link", { name: "#7 sweep" })).toHaveAttribute("href", "/groups/7");
    const row = screen.getByRole("row", { name: /#7 sweep/ });
    expect(row).toHaveTextContent("Running");
    expect(row).toHaveTextContent("3 of 5 tasks ended");
    expect(screen.getByRole("link", { name: "Run over inputs" })).toHaveAttribute("href", "/run?mode=group");
  });

  it("counts progress in words", () => {
    expect(progressText({ ...zero, succeeded: 2 }, 2).text).toBe("2 of 2 tasks ended: 2 succeeded.");
    expect(progressText({ ...zero, pending: 1 }, 1).text).toBe("0 of 1 task ended; 1 waiting to start.");
  });
});
