// A small browser-test harness on playwright-core driving the system Chromium (no browser
// download). Every page it opens fails the test on any console error, uncaught exception or
// request to a host other than our server, and each step can save a screenshot.
import { chromium } from "playwright-core";
import { mkdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const AXE_PATH = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
/** The axe-core rule tags the audit runs: WCAG 2.0 and 2.1, levels A and AA. */
export const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };
/** A snake_case token (an API code such as `out_of_range`) where a person reads a sentence. */
const RAW_CODE = /\b[a-z]+(?:_[a-z0-9]+)+\b/;
/** Where user-facing words live: errors, statuses, reasons, the receipt, amounts. */
const WORDS = "[role=alert], .banner, .field-error, .badge, .reason, .timeline, .receipt caption, .money, [data-testid=quote]";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

const LOCAL_SCHEMES = new Set(["data:", "blob:", "about:", "chrome-error:"]);

export class Harness {
  /** @param {{ baseUrl: string, outDir: string }} options */
  constructor({ baseUrl, outDir }) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.origin = new URL(this.baseUrl);
    this.outDir = outDir;
    this.problems = [];
    this.allowed = [];
    // A development aid while parts of the backend are missing: console errors matching
    // E2E_IGNORE (a regular expression) are not failures. Never set in CI.
    this.ignore = process.env.E2E_IGNORE ? new RegExp(process.env.E2E_IGNORE) : null;
    this.browser = null;
    this.shots = 0;
    this.pages = [];
  }

  async start() {
    // Fresh artifacts each run: only this run's screenshots are left to look at.
    await rm(this.outDir, { recursive: true, force: true });
    await mkdir(this.outDir, { recursive: true });
    this.browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
  }

  async stop() {
    await this.browser?.close();
  }

  /** Same host and port as the server (ws: for http:, wss: for https:). */
  isOurs(url) {
    const u = new URL(url);
    if (LOCAL_SCHEMES.has(u.protocol)) return true;
    return u.host === this.origin.host && [this.origin.protocol, this.origin.protocol.replace("http", "ws")].includes(u.protocol);
  }

  /** Let a console error matching `pattern` pass once (a test that provokes an API error). */
  allowConsoleError(pattern) {
    this.allowed.push(pattern);
  }

  record(who, kind, text) {
    if (this.ignore && this.ignore.test(text)) return;
    const index = this.allowed.findIndex((p) => p.test(text));
    if (kind === "console" && index >= 0) {
      this.allowed.splice(index, 1);
      return;
    }
    this.problems.push(`[${who}] ${kind}: ${text}`);
  }

  /** A fresh browser context (own cookies) with the watchdogs installed. */
  async newPage(who, viewport = DESKTOP) {
    const context = await this.browser.newContext({ baseURL: this.baseUrl, viewport, acceptDownloads: true });
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (this.isOurs(url)) return route.continue();
      this.record(who, "foreign request", url);
      return route.abort("blockedbyclient");
    });
    const page = await context.newPage();
    this.pages.push({ who, page });
    page.on("console", (msg) => {
      if (msg.type() === "error") this.record(who, "console", `${msg.text()} (${msg.location()?.url ?? ""})`);
    });
    page.on("pageerror", (err) => this.record(who, "page error", String(err?.stack ?? err)));
    page.on("websocket", (ws) => {
      if (!this.isOurs(ws.url())) this.record(who, "foreign websocket", ws.url());
    });
    page.on("requestfailed", (request) => {
      const failure = request.failure()?.errorText ?? "";
      // Aborted navigations and closed sockets are normal; blocked foreign requests are recorded above.
      if (!/ERR_ABORTED|blockedbyclient|ERR_BLOCKED_BY_CLIENT/i.test(failure) && this.isOurs(request.url())) {
        this.record(who, "request failed", `${request.method()} ${request.url()} ${failure}`);
      }
    });
    return page;
  }

  async screenshot(page, name) {
    this.shots += 1;
    const file = path.join(this.outDir, `${String(this.shots).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    return file;
  }

  /**
   * A main page's checks at desktop and at phone width: the axe-core audit (WCAG 2.1 A and AA)
   * finds nothing, the page does not scroll sideways, no raw error code or micro-credit count
   * is shown; a full-page screenshot at each width. Problems are recorded like console errors.
   */
  async audit(who, page, name) {
    const before = page.viewportSize() ?? DESKTOP;
    for (const [width, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
      await page.setViewportSize(viewport);
      await page.waitForTimeout(150); // a resize re-lays the page out
      const where = `${name} at ${viewport.width} px`;
      if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.addScriptTag({ path: AXE_PATH });
      const violations = await page.evaluate(async (tags) => {
        const result = await window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
        return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`);
      }, AXE_TAGS);
      for (const v of violations) this.record(who, "axe", `${where}: ${v}`);
      const overflow = await page.evaluate(() => {
        const doc = document.documentElement;
        if (doc.scrollWidth <= doc.clientWidth) return null;
        const wide = [...document.querySelectorAll("body *")]
          .filter((el) => el.getBoundingClientRect().right > doc.clientWidth + 1)
          .slice(0, 3)
          .map((el) => `${el.tagName.toLowerCase()}${el.className && typeof el.className === "string" ? `.${el.className.split(" ")[0]}` : ""}`);
        return `${doc.scrollWidth} px wide in a ${doc.clientWidth} px window (${wide.join(", ")})`;
      });
      if (overflow && viewport.width === PHONE.width) this.record(who, "horizontal scroll", `${where}: ${overflow}`);
      const words = await page.evaluate((selector) => [...document.querySelectorAll(selector)].map((el) => el.innerText), WORDS);
      for (const text of words) {
        const code = RAW_CODE.exec(text);
        if (code) this.record(who, "raw code shown", `${where}: "${code[0]}" in "${text.slice(0, 120)}"`);
      }
      const body = await page.evaluate(() => document.body.innerText);
      const unit = /\d[\d,]* micro-?credits|\b0\.000000\b/.exec(body);
      if (unit) this.record(who, "raw amount shown", `${where}: "${unit[0]}"`);
      await this.screenshot(page, width === "desktop" ? name : `${name}-phone`);
    }
    await page.setViewportSize(before);
  }

  /** Throws when anything was recorded since the last check. */
  assertClean(step) {
    if (this.problems.length) {
      const list = this.problems.splice(0);
      throw new Error(`${step}: ${list.length} problem(s) in the browser:\n  ${list.join("\n  ")}`);
    }
  }
}

/** JSON from our API inside the page (its session cookie and CSRF header). */
export async function apiGet(page, url) {
  return page.evaluate(async (u) => {
    const response = await fetch(u, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`GET ${u} -> ${response.status}: ${await response.text()}`);
    return response.json();
  }, url);
}

export async function waitFor(fn, { timeoutMs = 30000, intervalMs = 500, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}

/** A tiny sequential runner: `step(name, fn)`; a failed step skips the rest of its flow. */
export class Flow {
  /** @param {string} name @param {Harness} harness */
  constructor(name, harness) {
    this.name = name;
    this.harness = harness;
    this.results = [];
    this.failed = false;
  }

  /** `options.always`: run even after an earlier step failed (it checks what it can). */
  async step(name, fn, options = {}) {
    if (this.failed && !options.always) {
      this.results.push({ name, status: "skipped" });
      return undefined;
    }
    const started = Date.now();
    try {
      const value = await fn();
      this.results.push({ name, status: "passed", ms: Date.now() - started });
      process.stdout.write(`  ✓ ${name} (${Date.now() - started} ms)\n`);
      return value;
    } catch (err) {
      this.failed = true;
      this.anyFailed = true;
      const browser = this.harness?.problems.splice(0) ?? [];
      // What each browser showed when the step failed.
      for (const { who, page } of this.harness?.pages ?? []) {
        await this.harness.screenshot(page, `FAILED-${who}`).catch(() => undefined);
      }
      const message = [String(err?.message ?? err), ...browser.map((p) => `browser: ${p}`)].join("\n");
      this.results.push({ name, status: "failed", error: message });
      process.stdout.write(`  ✗ ${name}\n    ${message.split("\n").join("\n    ")}\n`);
      return undefined;
    }
  }
}
