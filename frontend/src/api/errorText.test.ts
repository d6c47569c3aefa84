import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { apiErrorFrom } from "./errors";
import { ERROR_SENTENCES, fieldLabel } from "./errorText";

function doc(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url)); // frontend/src/api
  return readFileSync(join(here, "..", "..", "..", "docs", name), "utf8");
}

/** The codes in the third column of docs/api.md's error table ("| status | when | codes |"). */
function apiDocCodes(): string[] {
  const text = doc("api.md");
  const section = text.slice(text.indexOf("### Errors"), text.indexOf("### Pagination"));
  const codes = new Set<string>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    if (cells.length < 5 || !/^\d{3}$/.test(cells[1] ?? "")) continue;
    // asides in parentheses ("`invalid` (with `fields`)") name no codes
    for (const match of (cells[3] ?? "").replace(/\([^)]*\)/g, "").matchAll(/`([a-z][a-z0-9_]*)`/g)) codes.add(match[1]!);
  }
  return [...codes];
}

/** The refusals docs/jobs.md names: a status and its codes, "400 `code`" or "413 `a` / `b` / `c`"
 * (a "`x` / `y`" without a status before it names fields, not codes). */
function jobsDocCodes(): string[] {
  const codes = new Set<string>();
  for (const chain of doc("jobs.md").matchAll(/\b\d{3} `[a-z][a-z0-9_]*`(?: \/ `[a-z][a-z0-9_]*`)*/g)) {
    for (const match of chain[0].matchAll(/`([a-z][a-z0-9_]*)`/g)) codes.add(match[1]!);
  }
  return [...codes];
}

function sentence(status: number, code: string, message = "", fields: unknown = {}): string {
  return apiErrorFrom(status, { error: { code, message, fields } }).message;
}

describe("error sentences", () => {
  it("finds the codes in the docs (the parser itself works)", () => {
    const api = apiDocCodes();
    expect(api).toEqual(expect.arrayContaining(["invalid", "insufficient_credits", "no_host_fits", "server_error", "throttled"]));
    expect(api.length).toBeGreaterThan(40);
    expect(jobsDocCodes()).toEqual(
      expect.arrayContaining(["code_required", "files_too_large", "code_too_large", "duplicate_path", "host_unfit", "offer_too_large", "group_finished"]),
    );
    // a pair of field names ("`host_fault_retries` / `error_retries`") is not a refusal
    expect(jobsDocCodes()).not.toContain("error_retries");
  });

  it("has a sentence for every code docs/api.md and docs/jobs.md list", () => {
    const missing = [...apiDocCodes(), ...jobsDocCodes()].filter((code) => !(code in ERROR_SENTENCES));
    expect(missing).toEqual([]);
  });

  it("never shows the code itself, nor a count of micro-credits", () => {
    for (const code of [...apiDocCodes(), ...jobsDocCodes()]) {
      const text = sentence(400, code, "not enough credits: 125997798 micro-credits left, 5000000000 needed");
      expect(text, code).not.toContain(code.includes("_") ? code : `\`${code}\``);
      expect(text, code).not.toMatch(/micro-?credits/);
      expect(text, code).toMatch(/^[A-Z].*[.!?]$/);
    }
  });

  it("says the balance and the need in credits", () => {
    expect(sentence(402, "insufficient_credits", "not enough credits: 125997798 micro-credits left, 5000000000 needed")).toBe(
      "Not enough credits: you have 125.99 credits; this needs 5,000 credits.",
    );
    expect(sentence(402, "insufficient_credits", "")).toBe("Not enough credits.");
  });

  it("turns bare field codes and micro-credit amounts into words", () => {
    const purchase = apiErrorFrom(400, { error: { code: "amount_out_of_range", message: "", fields: { amount_micros: "out_of_range" } } });
    expect(purchase.fields.amount_micros).toBe("This amount is outside the allowed range.");
    const cap = apiErrorFrom(400, {
      error: { code: "cap_too_low", message: "max_cost_micros must cover at least one minute at the host's rates (60000)", fields: { max_cost_micros: ["at least 60000"] } },
    });
    expect(cap.message).toBe("The cost cap must cover at least one minute on this machine: at least 0.06 credits.");
    expect(cap.fields.max_cost_micros).toBe("at least 0.06 credits");
    expect(cap.serverMessage).toContain("max_cost_micros");
  });

  it("keeps the server's detail where it names the problem", () => {
    expect(sentence(400, "invalid_requirement", "requirement line 2 ('-e foo') is an option, not a requirement")).toBe(
      "A requirement can't be installed as written (one package specifier per line, no options, URLs or paths): requirement line 2 ('-e foo') is an option, not a requirement.",
    );
    expect(sentence(429, "throttled", "Request was throttled. Expected available in 30 seconds.")).toBe("Too many requests; try again in 30 seconds.");
  });

  it("falls back to the status for an answer without our envelope, and to the message for a code it doesn't know", () => {
    expect(apiErrorFrom(502, "<html>Bad gateway</html>").message).toBe("The server is unavailable; try again shortly.");
    expect(sentence(409, "some_new_code", "The host is draining.")).toBe("The host is draining.");
    expect(sentence(409, "some_new_code", "some_new_code")).not.toContain("some_new_code");
  });

  it("says the data plane's refusals in words, sizes in GB, not bytes", () => {
    expect(sentence(413, "quota_exceeded", "quota exceeded: 5368709120 bytes used, 10737418240 bytes limit")).toBe(
      "Not enough storage left for this file (quota exceeded: 5.00 GB used, 10.00 GB limit): delete stored files you no longer need (Wallet, Storage), then press Retry.",
    );
    expect(sentence(413, "inputs_too_large", "the inputs total 6442450944 bytes; at most 5368709120 bytes")).toBe(
      "The job's inputs are too large together: the inputs total 6.00 GB; at most 5.00 GB.",
    );
    for (const code of ["digest_mismatch", "offset_mismatch", "chunk_too_large", "unknown_blob", "invalid_url", "in_use"]) {
      expect(code in ERROR_SENTENCES, code).toBe(true);
    }
    expect(fieldLabel("inputs[2].sha256")).toBe("Inputs (item 3, sha256)");
  });

  it("says why the zip as the code was refused, and what to do, from the archive_sha256 field", () => {
    const zipError = (status: number, code: string, why: string) =>
      apiErrorFrom(status, { error: { code, message: `the code archive ${why}`, fields: { archive_sha256: [why] } } }).fields.archive_sha256;
    expect(zipError(400, "unknown_blob", "you hold no blob with this sha256: upload it first")).toBe(
      "The zip is not among your stored files (it was deleted, or its upload did not finish): remove it and pick it again.",
    );
    expect(zipError(413, "archive_too_large", "unpacks to more than 1024 MB (disk.work_mb)")).toBe(
      "The zip unpacks to more than /work holds (1024 MB): raise “Space in /work” under Advanced: disk limits, or make the zip smaller.",
    );
    expect(zipError(400, "bad_archive", "is not a zip file")).toBe("The zip can't be the job's code: it is not a zip file.");
    expect(zipError(400, "bad_archive", "has a directory larger than 33554432 bytes")).toBe(
      "The zip can't be the job's code: it has a directory larger than 32.0 MB.",
    );
    expect(zipError(400, "invalid", "the archive is encrypted")).toBe("The zip can't be the job's code: the archive is encrypted.");
    expect(fieldLabel("archive_sha256")).toBe("Zip file");
  });

  it("says a job group's refusals in words: its two caps, the first tasks' holds, an ended group", () => {
    const groupCap = apiErrorFrom(400, {
      error: {
        code: "cap_too_low",
        message: "the group's max_cost_micros (1000000) must cover at least one task's task_max_cost_micros (5000000)",
        fields: { max_cost_micros: ["at least task_max_cost_micros (5000000)"] },
      },
    });
    expect(groupCap.message).toBe("The group's cost cap must cover at least one task's cap: at least 5 credits.");
    expect(groupCap.fields.max_cost_micros).toBe("at least the cost cap per task (5 credits)");
    const taskCap = apiErrorFrom(400, {
      error: { code: "cap_too_low", message: "task_max_cost_micros must cover at least one minute at the host's rates (60000)", fields: { task_max_cost_micros: ["at least 60000"] } },
    });
    expect(taskCap.message).toBe("Each task's cost cap must cover at least one minute on this machine: at least 0.06 credits.");
    expect(taskCap.fields.task_max_cost_micros).toBe("at least 0.06 credits");
    expect(sentence(402, "insufficient_credits", "the first 2 tasks' holds need 10000000 micro-credits; 500000 are available")).toBe(
      "Not enough credits: you have 0.50 credits; the first 2 tasks' holds need 10 credits.",
    );
    expect(sentence(409, "group_finished", "the job group has already ended")).toBe("The group has already ended: there is nothing left to cancel.");
    const argument = apiErrorFrom(400, {
      error: { code: "invalid", message: "", fields: { "inputs[3].argument": ["at most 65536 bytes as JSON: put bigger data in an input"], inputs: ["1 to 10000 tasks (JOB_GROUP_MAX_TASKS)"] } },
    });
    expect(argument.fields["inputs[3].argument"]).toBe("at most 64.0 KB as JSON: put bigger data in an input");
    expect(argument.fields.inputs).toBe("1 to 10000 tasks");
    // a count in a field that is not money stays a count
    const tooMany = apiErrorFrom(400, { error: { code: "too_many_inputs", message: "", fields: { "inputs[0].inputs": ["with the shared inputs and task.json, at most 1000"] } } });
    expect(tooMany.fields["inputs[0].inputs"]).toBe("with the shared inputs and task.json, at most 1000");
    expect(fieldLabel("task_max_cost_micros")).toBe("Cost cap per task");
    expect(fieldLabel("max_parallel")).toBe("Tasks at once");
  });

  it("names fields in words", () => {
    expect(fieldLabel("max_cost_micros")).toBe("Cost cap");
    expect(fieldLabel("files.0.path")).toBe("Files (item 1, path)");
    expect(fieldLabel("availability_policy")).toBe("Availability policy");
  });
});

describe("the private pools' refusals (issue 15)", () => {
  it("has a sentence for each new code, never the code itself", () => {
    for (const code of ["unknown_pool", "pool_required", "member_cap_exceeded", "output_not_released", "invalid_token"]) {
      expect(code in ERROR_SENTENCES, code).toBe(true);
      const text = sentence(400, code, "");
      expect(text, code).not.toContain(code);
      expect(text, code).toMatch(/^[A-Z].*[.!?]$/);
    }
  });

  it("says a member's cap, spending and need in credits, from the message or the fields", () => {
    expect(sentence(402, "member_cap_exceeded", "monthly cap 5000000 micro-credits: spent 4500000, requested 1000000")).toBe(
      "This would take you past your monthly cap on the organisation's wallet (your cap is 5 credits a month; you have spent 4.50 credits this month; this needs 1 credit): lower the cost cap, ask an admin of the organisation to raise your cap, or wait for next month.",
    );
    expect(sentence(402, "member_cap_exceeded", "over the cap", { monthly_cap_micros: "250000000", spent_micros: "249000000" })).toBe(
      "This would take you past your monthly cap on the organisation's wallet (your cap is 250 credits a month; you have spent 249 credits this month): lower the cost cap, ask an admin of the organisation to raise your cap, or wait for next month.",
    );
    expect(sentence(402, "member_cap_exceeded", "")).toBe(
      "This would take you past your monthly cap on the organisation's wallet: lower the cost cap, ask an admin of the organisation to raise your cap, or wait for next month.",
    );
  });

  it("names the organisations that require their pool, and why an output can't be downloaded", () => {
    expect(sentence(400, "pool_required", "name a pool: you are a member of organisations: City Hospital, Lab")).toBe(
      "Your organisation requires its members' jobs to run in its pool (City Hospital, Lab): choose it under “Run in”.",
    );
    expect(sentence(409, "output_not_released", "release refused")).toBe("That output is kept on the organisation's store and has not been released: a data steward refused its release.");
    expect(fieldLabel("monthly_cap_micros")).toBe("Monthly cap");
    expect(fieldLabel("pool_output_store.bucket")).toBe("Output store (bucket)");
  });
});
