#!/usr/bin/env node
// Runs the browser end-to-end flow. Either against a server you started (E2E_BASE_URL, plus
// E2E_STAFF_USERNAME / E2E_STAFF_PASSWORD), or — by default — it starts its own: migrates a
// fresh database, creates a staff user, runs daphne (and a Celery worker with beat) with demo
// payments and no dispute window, and stops them at the end. See e2e/README.md.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Harness } from "./harness.mjs";
import { marketplaceFlow } from "./flow.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const python = process.env.E2E_PYTHON || path.join(repo, ".venv", "bin", "python");
const outDir = process.env.E2E_OUT || path.join(repo, "test-artifacts", "e2e");
const children = [];
const log = (s) => process.env.E2E_VERBOSE && process.stdout.write(s);
const words = (s) => (s ? s.split(/\s+/).filter(Boolean) : []);

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function serverStart() {
  if (!existsSync(path.join(repo, "frontend", "dist", "index.html"))) {
    throw new Error("frontend/dist is missing: run `make frontend` first");
  }
  const port = Number(process.env.E2E_PORT) || (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const varDir = await mkdtemp(path.join(os.tmpdir(), "cp-e2e-"));
  const env = {
    ...process.env,
    // The real settings, even when started from pytest (which exports its test settings).
    DJANGO_SETTINGS_MODULE: "config.settings",
    DEBUG: "1",
    DATABASE_URL: process.env.E2E_DATABASE_URL || `sqlite:///${path.join(varDir, "db.sqlite3")}`,
    COMMUNIPUTE_VAR_DIR: varDir,
    PUBLIC_URL: baseUrl,
    PAYMENT_PROVIDER: "demo",
    DEMO_PAYMENTS_ENABLED: "1",
    EARNINGS_DISPUTE_WINDOW_SECONDS: "0",
    PLACEMENT_ALLOW_UNISOLATED_HOSTS: "1",
    // The 8-second job then leaves several stored usage samples for the finished job's charts.
    HOST_USAGE_REPORT_SECONDS: "2",
    THROTTLE_AUTH: "1000/min",
    THROTTLE_ANON: "10000/min",
    THROTTLE_USER: "10000/min",
  };
  if (!process.env.E2E_REDIS_URL) delete env.REDIS_URL;
  else env.REDIS_URL = process.env.E2E_REDIS_URL;
  const manage = (args) => {
    const result = spawnSync(python, ["manage.py", ...args], { cwd: repo, env, encoding: "utf-8" });
    if (result.status !== 0) throw new Error(`manage.py ${args[0]} failed:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  };
  manage(["migrate", "--noinput"]);
  const staff = { username: "e2e-staff", password: "e2e staff password 42" };
  manage([
    "shell",
    "-c",
    `from accounts.models import User; User.objects.filter(username="${staff.username}").exists() or ` +
      `User.objects.create_user(username="${staff.username}", email="staff@example.com", password="${staff.password}", is_staff=True)`,
  ]);
  const daphne = spawn(path.join(path.dirname(python), "daphne"), ["-b", "127.0.0.1", "-p", String(port), "config.asgi:application"], {
    cwd: repo,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  daphne.stdout.on("data", (d) => log(`[daphne] ${d}`));
  daphne.stderr.on("data", (d) => log(`[daphne] ${d}`));
  children.push(daphne);
  if (process.env.E2E_CELERY !== "0") {
    const worker = spawn(path.join(path.dirname(python), "celery"), ["-A", "config", "worker", "-B", "--pool", "solo", "--loglevel", "INFO", "-s", path.join(varDir, "beat-schedule")], {
      cwd: repo,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    worker.stdout.on("data", (d) => log(`[celery] ${d}`));
    worker.stderr.on("data", (d) => log(`[celery] ${d}`));
    children.push(worker);
  }
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${baseUrl}/login`);
      if (response.ok) return { baseUrl, staff };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`daphne did not answer on ${baseUrl}`);
}

const running = (child) => child.exitCode === null && child.signalCode === null;

// SIGTERM every child (the agent drains on it), then SIGKILL what is still there after a grace:
// a child left running would keep this process, and the test that waits for it, alive.
async function stopAll(graceMs = 15000) {
  const live = children.reverse().filter(running);
  for (const child of live) child.kill("SIGTERM");
  const exited = (child) => new Promise((resolve) => (running(child) ? child.once("exit", resolve) : resolve()));
  await Promise.race([Promise.all(live.map(exited)), new Promise((resolve) => setTimeout(resolve, graceMs))]);
  for (const child of live.filter(running)) child.kill("SIGKILL");
}

async function main() {
  let baseUrl = process.env.E2E_BASE_URL;
  let staff = { username: process.env.E2E_STAFF_USERNAME ?? "", password: process.env.E2E_STAFF_PASSWORD ?? "" };
  if (!baseUrl) ({ baseUrl, staff } = await serverStart());
  const h = new Harness({ baseUrl, outDir });
  await h.start();
  process.stdout.write(`e2e against ${baseUrl}; screenshots in ${outDir}\n`);
  let flow;
  try {
    flow = await marketplaceFlow(h, {
      staff,
      children,
      log,
      agentBin: process.env.E2E_AGENT || path.join(path.dirname(python), "communipute-agent"),
      agentEnrollArgs: words(process.env.E2E_AGENT_ENROLL_ARGS),
      agentRunArgs: words(process.env.E2E_AGENT_RUN_ARGS),
      agentEnv: Object.fromEntries(
        // The runner image that `make runner-image` builds (no registry needed), unless told otherwise.
        [`COMMUNIPUTE_RUNNER_IMAGE=${process.env.COMMUNIPUTE_RUNNER_IMAGE || "communipute/runner:latest"}`, ...words(process.env.E2E_AGENT_ENV)].map((kv) => [kv.split("=")[0], kv.split("=").slice(1).join("=")],
        ),
      ),
    });
  } finally {
    await h.stop();
    await stopAll();
  }
  await writeFile(path.join(outDir, "results.json"), JSON.stringify({ baseUrl, results: flow.results }, null, 2));
  const failed = flow.results.filter((r) => r.status !== "passed");
  process.stdout.write(`${flow.results.length - failed.length} passed, ${failed.filter((r) => r.status === "failed").length} failed, ${failed.filter((r) => r.status === "skipped").length} skipped\n`);
  process.exitCode = failed.length ? 1 : 0;
}

process.on("SIGINT", () => {
  for (const child of children.filter(running)) child.kill("SIGKILL");
  process.exit(130);
});
main().catch(async (err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exitCode = 2;
  await stopAll();
});
