// The marketplace end to end, through the browser: sign up, buy credits (demo provider),
// enroll a host (a real agent process), run a job, watch its logs arrive live, check that the
// wallet and the host's earnings change by exactly the receipt's amounts, and that staff see
// it in the billing report. Amounts are read from the API inside the page (exact micros);
// everything a person does goes through the UI.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { apiGet, DESKTOP, Flow, PHONE, waitFor } from "./harness.mjs";

const PASSWORD = "e2e correct horse 42";
const JOB_CODE = [
  "import time",
  "for i in range(8):",
  "    print(f'tick {i}', flush=True)",
  "    time.sleep(1)",
  "with open('/outputs/result.txt', 'w') as f:",
  "    f.write('done')",
  "print('finished', flush=True)",
].join("\n");

/** 1234 -> "0.001234 cr", as the pages print exact amounts. */
const sum = (values) => values.reduce((a, b) => a + (typeof b === "number" ? b : 0), 0);

/** Presses Tab until `isTarget(document.activeElement)`; returns the labels passed on the way. */
async function tabTo(page, isTarget, max = 60) {
  const passed = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const here = await page.evaluate(`(() => {
      const el = document.activeElement;
      const label = el?.labels?.[0]?.textContent ?? el?.getAttribute?.("aria-label") ?? el?.textContent ?? "";
      return { label: label.trim().slice(0, 40), hit: (${isTarget.toString()})(el) };
    })()`);
    passed.push(here.label);
    if (here.hit) return passed;
  }
  throw new Error(`Tab never reached the target: ${passed.join(" → ")}`);
}

async function signUp(page, username) {
  await page.goto("/signup");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForURL("**/wallet");
  await page.getByTestId("whoami").filter({ hasText: username }).waitFor();
}

async function logIn(page, username, password) {
  await page.goto("/login");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("whoami").filter({ hasText: username }).waitFor();
}

function earnedTotal(earnings) {
  return earnings.pending_micros + earnings.available_micros + earnings.in_payout_micros + earnings.paid_micros;
}

/**
 * What the receipt says moved: the renter paid `charged` (gross - reversed); the host kept
 * its net of every attempt less what lost attempts gave back; the platform kept the rest.
 */
export function receiptAmounts(receipt) {
  const t = receipt.totals;
  const reversedHostPart = sum(receipt.attempts.map((a) => a.reversed_micros - a.reversed_fee_micros));
  const reversedFee = sum(receipt.attempts.map((a) => a.reversed_fee_micros));
  return { charged: t.charged_micros, fee: t.fee_micros - reversedFee, hostNet: t.host_net_micros - reversedHostPart };
}

/** Split a POSIX shell command line as Python's shlex.join writes it (quotes, no expansion). */
export function shellSplit(line) {
  const words = [];
  let word = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unbalanced quote in: ${line}`);
      word = (word ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      let text = "";
      for (; j < line.length && line[j] !== '"'; j++) text += line[j] === "\\" && j + 1 < line.length ? line[++j] : line[j];
      word = (word ?? "") + text;
      i = j;
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}

/** Runs the enrollment command shown on the page, then the agent; returns the process. */
async function agentStart(command, options) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "cp-agent-"));
  const env = {
    ...process.env,
    COMMUNIPUTE_AGENT_CONFIG: path.join(dir, "agent.json"),
    COMMUNIPUTE_WORK_DIR: path.join(dir, "work"),
    ...options.agentEnv,
  };
  const args = shellSplit(command.trim());
  if (!/communipute-agent$/.test(args[0] ?? "")) throw new Error(`unexpected enrollment command: ${command}`);
  const run = (argv) =>
    new Promise((resolve, reject) => {
      const child = spawn(options.agentBin, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d) => (output += d));
      child.stderr.on("data", (d) => (output += d));
      child.on("exit", (code) => (code === 0 ? resolve(output) : reject(new Error(`agent ${argv[0]} exited ${code}: ${output}`))));
    });
  await run([...args.slice(1), ...options.agentEnrollArgs]);
  const agent = spawn(options.agentBin, ["run", ...options.agentRunArgs], { env, stdio: ["ignore", "pipe", "pipe"] });
  agent.stdout.on("data", (d) => options.log(`[agent] ${d}`));
  agent.stderr.on("data", (d) => options.log(`[agent] ${d}`));
  return agent;
}

/**
 * @param {import("./harness.mjs").Harness} h
 * @param {{ staff: {username: string, password: string}, agentBin: string, agentEnrollArgs: string[],
 *   agentRunArgs: string[], agentEnv: Record<string,string>, log: (s: string) => void, children: any[] }} options
 */
export async function marketplaceFlow(h, options) {
  const flow = new Flow("marketplace", h);
  const stamp = Date.now().toString(36);
  const renterName = `renter${stamp}`;
  const ownerName = `owner${stamp}`;
  const state = {};

  const visitor = await h.newPage("visitor");
  await flow.step("anonymous pages render cleanly", async () => {
    for (const [url, name] of [["/", "home"], ["/login", "login"], ["/signup", "signup"]]) {
      await visitor.goto(url);
      await visitor.locator("main h1").waitFor();
      await h.audit("visitor", visitor, name);
    }
    await visitor.goto("/wallet");
    await visitor.waitForURL("**/login?next=%2Fwallet");
    h.assertClean("anonymous pages");
  });

  const owner = await h.newPage("owner");
  await flow.step("host owner signs up and creates an enrollment", async () => {
    await signUp(owner, ownerName);
    await owner.goto("/hosting");
    await owner.getByLabel("Machine name (optional)").fill(`e2e-${stamp}`);
    await owner.getByRole("button", { name: "Create enrollment command" }).click();
    const command = (await owner.getByLabel("Enrollment command").textContent())?.trim() ?? "";
    if (!command.includes("--token")) throw new Error(`no token in the command: ${command}`);
    state.command = command;
    await h.audit("owner", owner, "hosting-enrollment");
    h.assertClean("enrollment");
  });

  await flow.step("the agent enrolls and the host comes online", async () => {
    const agent = await agentStart(state.command, options);
    options.children.push(agent);
    const hosts = await waitFor(async () => {
      const page = await apiGet(owner, "/api/v1/my/hosts/");
      return page.results.find((x) => x.status === "online") ? page : null;
    }, { timeoutMs: 60000, what: "the enrolled host to be online" });
    state.host = hosts.results.find((x) => x.status === "online");
    await owner.reload();
    await owner.getByTestId(`my-host-${state.host.id}`).getByText("online").waitFor();
    h.assertClean("host online");
  });

  await flow.step("owner sets rates on the dashboard", async () => {
    const row = owner.getByTestId(`my-host-${state.host.id}`);
    await row.getByRole("button", { name: "Edit rates and policy" }).click();
    await row.getByLabel("Per CPU core-hour used").fill("36");
    await row.getByLabel("Per GB-hour of memory").fill("3.6");
    await row.getByLabel("Per GPU-hour").fill("0");
    await row.getByRole("button", { name: "Save" }).click();
    await row.getByText("Saved.").waitFor();
    const host = await apiGet(owner, `/api/v1/my/hosts/${state.host.id}/`);
    if (host.cpu_core_hour_micros !== 36_000_000) throw new Error(`rate not saved: ${host.cpu_core_hour_micros}`);
    await h.audit("owner", owner, "hosting-dashboard");
    h.assertClean("rates");
  });

  const renter = await h.newPage("renter");
  await flow.step("renter signs up", async () => {
    await signUp(renter, renterName);
    h.assertClean("sign up");
  });

  await flow.step("renter buys 20 credits (demo provider)", async () => {
    const before = await apiGet(renter, "/api/v1/wallet/");
    await renter.getByLabel("Amount (credits)").fill("20");
    await renter.getByRole("button", { name: "Buy credits" }).click();
    await renter.getByText("added (demo payment)").waitFor();
    const after = await waitFor(async () => {
      const w = await apiGet(renter, "/api/v1/wallet/");
      return w.balance_micros === before.balance_micros + 20_000_000 ? w : null;
    }, { what: "the wallet to show the 20 credits" });
    await renter.getByTestId("balance").filter({ hasText: "20.00 cr" }).waitFor();
    await renter.getByTestId("transactions").waitFor();
    await h.audit("renter", renter, "wallet-after-purchase");
    state.walletAfterPurchase = after;
    h.assertClean("buy credits");
  });

  await flow.step("renter finds the host in the catalog", async () => {
    await renter.goto("/catalog");
    await renter.getByRole("link", { name: `e2e-${stamp}` }).click();
    await renter.waitForURL(`**/hosts/${state.host.id}`);
    await renter.getByText("36.00 cr per core-hour used").waitFor();
    await h.audit("renter", renter, "host-page");
    await renter.goto("/catalog");
    await renter.locator("table").waitFor();
    await h.audit("renter", renter, "catalog");
    // On a phone the machine's price and "Run here" stay on screen.
    await renter.setViewportSize(PHONE);
    for (const what of [renter.getByText("36.00 cr/core-h").first(), renter.getByRole("link", { name: "Run here" }).first()]) {
      const box = await what.boundingBox();
      if (!box || box.x < 0 || box.x + box.width > PHONE.width) throw new Error(`off screen at ${PHONE.width} px: ${JSON.stringify(box)}`);
    }
    await renter.setViewportSize(DESKTOP);
    h.assertClean("catalog");
  });

  await flow.step("renter runs a job on that host with a live quote", async () => {
    // Checked in the amounts step (so a missing earnings API fails there, not here).
    state.earningsBefore = await apiGet(owner, "/api/v1/earnings/").catch((err) => err);
    await renter.goto(`/run?host=${state.host.id}`);
    const editor = renter.locator(".cm-content");
    await editor.click();
    await renter.keyboard.press("Control+A");
    await renter.keyboard.press("Delete");
    // CodeMirror auto-indents typed newlines; insertText keeps the text as it is.
    await renter.keyboard.insertText(JOB_CODE);
    await renter.getByLabel("Cost cap (credits)").fill("5");
    await renter.getByTestId("quote-estimate").waitFor({ timeout: 15000 });
    await h.audit("renter", renter, "run");
    // Keyboard only: from the editor, Escape then Tab leaves it; Tab reaches the cost cap and
    // the Run button, and Enter submits.
    await editor.click();
    await renter.keyboard.press("Escape");
    const reached = await tabTo(renter, (el) => el.tagName === "BUTTON" && el.textContent === "Run");
    if (!reached.some((label) => label.startsWith("Cost cap"))) throw new Error(`Tab never reached the cost cap: ${reached.join(" → ")}`);
    await renter.keyboard.press("Enter");
    await renter.waitForURL(/\/jobs\/\d+$/);
    state.jobId = Number(renter.url().split("/").pop());
    h.assertClean("submit");
  });

  await flow.step("the log arrives live while the job runs", async () => {
    const log = renter.getByTestId("log");
    await log.filter({ hasText: "tick 2" }).waitFor({ timeout: 120000 });
    const job = await apiGet(renter, `/api/v1/jobs/${state.jobId}/`);
    if (!["running", "preparing"].includes(job.status)) throw new Error(`log seen but status is ${job.status}: not live`);
    await h.screenshot(renter, "job-running");
    await renter.getByTestId("job-status").filter({ hasText: "Succeeded" }).waitFor({ timeout: 120000 });
    await log.filter({ hasText: "finished" }).waitFor();
    const text = await log.textContent();
    for (let i = 0; i < 8; i++) if (!text.includes(`tick ${i}\n`)) throw new Error(`log lacks tick ${i}: ${text}`);
    if (text.split("tick 3\n").length !== 2) throw new Error(`a log line appears twice: ${text}`);
    await renter.getByRole("link", { name: "result.txt" }).waitFor();
    const download = await Promise.all([renter.waitForEvent("download"), renter.getByRole("link", { name: "result.txt" }).click()]);
    const saved = await download[0].path();
    const content = saved ? (await import("node:fs")).readFileSync(saved, "utf-8") : "";
    if (content !== "done") throw new Error(`the output file holds ${JSON.stringify(content)}`);
    h.assertClean("job");
  });

  await flow.step("the job page shows the receipt", async () => {
    await renter.getByTestId("receipt").waitFor();
    await h.audit("renter", renter, "job-finished");
    // Keyboard only: the output link and the receipt are reached with Tab from the top.
    await renter.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));
    await tabTo(renter, (el) => el.tagName === "A" && el.textContent === "result.txt", 120);
    h.assertClean("receipt");
  });

  await flow.step("a finished job reopened draws its charts and timeline from the stored history", async () => {
    const history = await apiGet(renter, `/api/v1/jobs/${state.jobId}/usage/`);
    const samples = history.attempts.flatMap((a) => a.samples);
    if (samples.length < 2) throw new Error(`only ${samples.length} usage samples stored: ${JSON.stringify(history)}`);
    const steps = history.timeline.map((e) => e.status);
    for (const s of ["queued", "offered", "accepted", "running", "succeeded"]) {
      if (!steps.includes(s)) throw new Error(`the stored timeline lacks ${s}: ${steps.join(", ")}`);
    }
    // A fresh page (no live reports): everything drawn comes from what was stored.
    await renter.goto(`/jobs/${state.jobId}`);
    for (const width of [DESKTOP, PHONE]) {
      await renter.setViewportSize(width);
      await renter.getByRole("img", { name: /^Cost so far/ }).waitFor();
      await renter.getByRole("img", { name: /^Memory in use/ }).waitFor();
      const timeline = renter.getByRole("list", { name: "Status timeline" });
      await timeline.getByText("Succeeded").waitFor();
      await timeline.getByText("Accepted").waitFor();
    }
    await renter.setViewportSize(DESKTOP);
    await h.audit("renter", renter, "job-reopened");
    h.assertClean("job history");
  });

  await flow.step("wallet and earnings change by exactly the receipt's amounts", async () => {
    const wallet = await waitFor(async () => {
      const w = await apiGet(renter, "/api/v1/wallet/");
      return w.held_micros === 0 ? w : null;
    }, { what: "the hold to be released" });
    const receipt = await apiGet(renter, `/api/v1/jobs/${state.jobId}/receipt/`);
    const { charged, fee, hostNet } = receiptAmounts(receipt);
    if (!(charged > 0)) throw new Error(`nothing charged: ${JSON.stringify(receipt)}`);
    if (!receipt.is_settled) throw new Error("the receipt says the job is not settled");
    const spent = state.walletAfterPurchase.balance_micros - wallet.balance_micros;
    if (spent !== charged) throw new Error(`wallet went down by ${spent}, the receipt says ${charged}`);
    // the exact micro-credits are in the amount's tooltip
    await renter.getByTestId("receipt-charged").locator(`[data-micros="${charged}"]`).waitFor();
    if (hostNet + fee !== charged) throw new Error(`host net ${hostNet} + fee ${fee} != charged ${charged}`);
    if (state.earningsBefore instanceof Error) throw state.earningsBefore;
    const earnings = await apiGet(owner, "/api/v1/earnings/");
    const earned = earnedTotal(earnings) - earnedTotal(state.earningsBefore);
    if (earned !== hostNet) throw new Error(`host earned ${earned}, the receipt says ${hostNet}`);
    state.fee = fee;
    await renter.goto("/wallet");
    await renter.getByTestId("transactions").waitFor();
    // One history line for the job (not a row per charge), its cost the receipt's, and its
    // ledger entries a click away; at desktop and phone width.
    const lines = await apiGet(renter, "/api/v1/wallet/history/");
    const jobLines = lines.results.filter((l) => l.line === "job" && l.job_id === state.jobId);
    if (jobLines.length !== 1) throw new Error(`${jobLines.length} history lines for job ${state.jobId}`);
    if (jobLines[0].cost_micros !== charged) throw new Error(`history says ${jobLines[0].cost_micros}, the receipt ${charged}`);
    if (!lines.results.some((l) => l.line === "purchase")) throw new Error("the purchase has no history line");
    const jobRow = renter.getByTestId("history-line").filter({ hasText: `#${state.jobId}` });
    await jobRow.getByRole("button", { name: /^Entries/ }).click();
    await renter.getByTestId("line-entries").getByText("Hold for a job").first().waitFor();
    await h.audit("renter", renter, "wallet-after-job");
    const csv = await renter.evaluate(async () => {
      const r = await fetch("/api/v1/wallet/history/?format=csv");
      return { type: r.headers.get("content-type"), text: await r.text() };
    });
    if (!csv.type?.startsWith("text/csv") || !csv.text.includes(`job,${state.jobId},`)) throw new Error(`the CSV lacks the job: ${csv.type} ${csv.text.slice(0, 300)}`);
    await renter.goto("/jobs");
    await renter.getByRole("link", { name: new RegExp(`#${state.jobId}`) }).waitFor();
    await h.audit("renter", renter, "jobs");
    await owner.goto("/hosting");
    await owner.getByTestId("earnings-pending").waitFor();
    await h.audit("owner", owner, "hosting-earnings");
    h.assertClean("amounts");
  });

  await flow.step("staff see the job in the billing report", async () => {
    const staff = await h.newPage("staff");
    await logIn(staff, options.staff.username, options.staff.password);
    await staff.goto("/reports");
    await staff.getByTestId("reconciliation").waitFor();
    const today = new Date().toISOString().slice(0, 10);
    const report = await apiGet(staff, `/api/v1/admin/reports/billing/?from=${today}&to=${today}&group_by=day`);
    await staff.getByRole("table", { name: "Per day, days with activity" }).waitFor();
    await h.audit("staff", staff, "reports");
    // The job's own figures, when the flow got that far.
    if (state.fee === undefined) throw new Error("no job was charged earlier in the flow: the report could not be checked");
    const fees = report.totals.platform_fees_micros;
    if (fees < state.fee) throw new Error(`report fees ${fees} < this job's fee ${state.fee}`);
    const hostRow = report.top_hosts.find((r) => r.host === state.host.id);
    if (!hostRow) throw new Error(`host ${state.host.id} is not among the top hosts`);
    if (hostRow.platform_fees_micros !== state.fee) throw new Error(`host row fee ${hostRow.platform_fees_micros} != ${state.fee}`);
    await staff.getByRole("table", { name: "The hosts with the most gross charges" }).getByText(`e2e-${stamp}`).waitFor();
    const csv = await staff.evaluate(async (u) => (await fetch(u)).text(), `/api/v1/admin/reports/billing/?from=${today}&to=${today}&group_by=day&format=csv`);
    if (!csv.includes(today)) throw new Error(`CSV lacks today's row: ${csv.slice(0, 200)}`);
    h.assertClean("reports");
  }, { always: true });

  // After the billing checks, which count this host's one job: this is a second job on it.
  await flow.step("renter uploads an input file, runs a job that reads it, and the job page lists it", async () => {
    const content = `input bytes ${stamp}\n`;
    const digest = createHash("sha256").update(content).digest("hex");
    await renter.goto(`/run?host=${state.host.id}`);
    const editor = renter.locator(".cm-content");
    await editor.click();
    await renter.keyboard.press("Control+A");
    await renter.keyboard.press("Delete");
    await renter.keyboard.insertText(
      ["import hashlib", "data = open('/inputs/hello.txt', 'rb').read()", "print('input sha256', hashlib.sha256(data).hexdigest(), flush=True)"].join("\n"),
    );
    await renter.getByLabel("Cost cap (credits)").fill("5");
    // Not held yet: the page's HEAD /blobs/{sha256}/ answers 404, which Chromium logs.
    h.allowConsoleError(new RegExp(`404.*/api/v1/blobs/${digest}/`));
    await renter.getByTestId("inputs-files").setInputFiles({ name: "hello.txt", mimeType: "text/plain", buffer: Buffer.from(content) });
    const row = renter.getByTestId("input-row").filter({ hasText: "hello.txt" });
    await row.getByText("✓ Uploaded").waitFor({ timeout: 30000 });
    const held = await apiGet(renter, `/api/v1/blobs/${digest}/`);
    if (held.size !== Buffer.byteLength(content)) throw new Error(`the stored blob: ${JSON.stringify(held)}`);
    await renter.getByTestId("quote-estimate").waitFor({ timeout: 15000 });
    await h.audit("renter", renter, "run-with-input");
    await renter.getByRole("button", { name: "Run" }).click();
    await renter.waitForURL(/\/jobs\/\d+$/);
    const jobId = Number(renter.url().split("/").pop());
    const inputs = renter.getByRole("table", { name: "Inputs, read-only in /inputs" });
    await inputs.getByText("hello.txt").waitFor();
    await inputs.locator(`[data-sha256="${digest}"]`).waitFor();
    await inputs.getByText(`${Buffer.byteLength(content)} B`).waitFor();
    await renter.getByTestId("job-status").filter({ hasText: "Succeeded" }).waitFor({ timeout: 120000 });
    await renter.getByTestId("log").filter({ hasText: `input sha256 ${digest}` }).waitFor();
    const job = await apiGet(renter, `/api/v1/jobs/${jobId}/`);
    if (!job.inputs?.some((i) => i.path === "hello.txt" && i.sha256 === digest && i.source === "store")) throw new Error(`the job's inputs: ${JSON.stringify(job.inputs)}`);
    await h.audit("renter", renter, "job-with-input");
    // The Wallet's storage panel lists it.
    await renter.goto("/wallet");
    await renter.getByRole("table", { name: "Your stored files" }).locator(`[data-sha256="${digest}"]`).waitFor();
    h.assertClean("inputs");
  });

  return flow;
}
