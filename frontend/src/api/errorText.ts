// What a person reads when the API refuses something: a sentence for every error code the API
// can return (docs/api.md lists them; errorText.test.ts fails when one has no sentence), with
// amounts in credits, never a raw code or a count of micro-credits.

import { formatBytes } from "../lib/files";
import { creditsWords } from "../lib/money";

/** What the server said, for the sentences that carry its detail (a file name, a line). */
interface Said {
  message: string;
  fields: Record<string, string>;
}

type Sentence = string | ((said: Said) => string);

/** "not enough credits: 125997798 micro-credits left, 5000000000 needed" -> the two amounts. */
function leftAndNeeded(message: string): [number, number] | null {
  const match = /(-?\d+) micro-credits left, (\d+) needed/.exec(message);
  return match ? [Number(match[1]), Number(match[2])] : null;
}

/** Every "12345 micro-credits" (or "(12345)" after "at least") in a server text, in credits;
 * every "5368709120 bytes" in GB, MB or KB. */
export function humanizeAmounts(text: string): string {
  return humanizeUnits(text).replace(/\b(at least|at most|minimum|maximum) \(?(\d+)\)?(?!\d|\.\d| ?[KMG]?B\b)/g, (_, word: string, n: string) => `${word} ${creditsWords(Number(n))}`);
}

/** Only the amounts that say their unit: "12345 micro-credits", "5368709120 bytes". */
function humanizeUnits(text: string): string {
  return text
    .replace(/(-?\d+) micro-?credits/g, (_, n: string) => creditsWords(Number(n)))
    .replace(/\b(\d{4,}) bytes\b/g, (_, n: string) => formatBytes(Number(n)));
}

/** The server's detail as the end of our sentence: "…: Model.pt is larger than 1 MB." */
function withDetail(lead: string): (said: Said) => string {
  return ({ message }) => {
    const detail = humanizeAmounts(message.trim()).replace(/\.$/, "");
    return detail ? `${lead}: ${detail}.` : `${lead}.`;
  };
}

function moneyShort(lead: string, what: string): (said: Said) => string {
  return ({ message }) => {
    const amounts = leftAndNeeded(message);
    if (!amounts) return `${lead}.`;
    return `${lead}: you have ${creditsWords(amounts[0])}; ${what} needs ${creditsWords(amounts[1])}.`;
  };
}

/** A group's create: "the first 2 tasks' holds need 10000000 micro-credits; 500000 are available". */
function groupHoldsShort(message: string): string | null {
  const match = /the first (\d+) tasks?'? holds? needs? (\d+) micro-credits; (-?\d+) (?:are|is) available/.exec(message);
  if (!match) return null;
  const [, count, needed, available] = match;
  const what = count === "1" ? "the first task's hold needs" : `the first ${count} tasks' holds need`;
  return `Not enough credits: you have ${creditsWords(Number(available))}; ${what} ${creditsWords(Number(needed))}.`;
}

/** A member's monthly cap refusal: "monthly cap 5000000, spent 4500000, requested 1000000"
 * (in the message or as fields), in credits. */
function memberCapShort({ message, fields }: Said): string {
  const text = `${message} ${Object.entries(fields).map(([key, value]) => `${key} ${value}`).join(" ")}`;
  const amount = (pattern: RegExp) => {
    const match = pattern.exec(text);
    return match ? Number(match[1]) : null;
  };
  const cap = amount(/(?<![a-z])cap(?:_micros)?\b\D{0,20}?(\d+)/i);
  const spent = amount(/(?<![a-z])spent(?:_micros)?\b\D{0,20}?(\d+)/i);
  const requested = amount(/(?<![a-z])(?:requested|request|needs?|hold)(?:_micros)?\b\D{0,20}?(\d+)/i);
  const lead = "This would take you past your monthly cap on the organisation's wallet";
  const advice = "lower the cost cap, ask an admin of the organisation to raise your cap, or wait for next month.";
  if (cap === null) return `${lead}: ${advice}`;
  const figures = [`your cap is ${creditsWords(cap)} a month`];
  if (spent !== null) figures.push(`you have spent ${creditsWords(spent)} this month`);
  if (requested !== null) figures.push(`this needs ${creditsWords(requested)}`);
  return `${lead} (${figures.join("; ")}): ${advice}`;
}

export const ERROR_SENTENCES: Record<string, Sentence> = {
  // 400: bad input
  invalid: withDetail("Some of what you entered needs fixing"),
  parse_error: "The request could not be read; reload the page and try again.",
  bad_request: "The request was refused; reload the page and try again.",
  duplicate: "That already exists (an account with this email, or the same item twice).",
  invalid_credentials: "That email and password don't match an account.",
  invalid_idempotency_key: "The request's retry key was not valid; reload the page and try again.",
  idempotency_key_required: "The request had no retry key; reload the page and try again.",
  invalid_specs: withDetail("The machine's description was refused"),
  invalid_policy: withDetail("That availability policy can't be used"),
  invalid_limits: withDetail("Those limits can't be used"),
  amount_out_of_range: ({ message }) => `That amount is outside what can be bought at once${message ? ` (${humanizeAmounts(message).replace(/\.$/, "")})` : ""}.`,
  amount_not_whole_cents: "Amounts are paid in whole cents: use at most two decimals (for example 12.50).",
  invalid_amount: "Enter an amount in credits, for example 12.50.",
  payout_below_minimum: ({ message }) => `That payout is below the minimum${message ? ` (${humanizeAmounts(message).replace(/\.$/, "")})` : ""}.`,
  invalid_signature: "The payment provider's message could not be verified.",
  invalid_payload: "The payment provider's message could not be read.",
  invalid_event_source: "The payment provider's message was signed for another account.",
  invalid_period: "Choose a start date on or before the end date.",
  invalid_source: withDetail("That source can't be used"),
  digest_mismatch: "The file's bytes don't match its sha256 (it changed while it was read or sent); nothing was kept. Press Retry to read it again.",
  unknown_blob: "An input names a file you haven't uploaded (or have deleted): upload it again, or check its sha256.",
  invalid_url: withDetail("An input's URL can't be used (https only, to a public host name, with no user name or password)"),
  invalid_key: withDetail("That key can't be used"),
  reason_required: "Give a reason for this change.",
  unknown_user: "There is no account with that email.",
  // jobs (docs/jobs.md)
  code_required: "Give the job its code: write it in the editor, or upload files or a zip.",
  no_files: "Give the job its code: write it in the editor, or upload files or a zip.",
  invalid_requirement: withDetail("A requirement can't be installed as written (one package specifier per line, no options, URLs or paths)"),
  too_many_requirements: withDetail("The job lists too many requirements"),
  invalid_path: withDetail("A file name can't be used (relative paths only, no '..')"),
  duplicate_path: withDetail("Two files have the same name"),
  too_many_files: withDetail("The job has too many files"),
  invalid_entrypoint: withDetail("The file to run must be one of the job's files and end in .py"),
  entrypoint_required: "Choose which file to run.",
  bad_archive: withDetail("The zip file could not be used"),
  host_unfit: withDetail("That machine can't run this job"),
  unknown_host: "That machine is not in the catalog (it may have been removed); choose another.",
  // private pools (docs/pools.md)
  unknown_pool: "That pool is not one of your organisations' (or it no longer exists): choose another under “Run in”.",
  pool_required: ({ message }) => {
    const named = /organisations?: (.+?)\.?$/.exec(message.trim());
    return `Your organisation requires its members' jobs to run in its pool${named ? ` (${named[1]})` : ""}: choose it under “Run in”.`;
  },
  address_not_allowed: withDetail("That input's address is not one the pool allows: a pool job reads public https addresses and those its pool lists"),
  organisation_admin_required: "Only an admin of the organisation can do that.",
  not_a_member: "You are not a member of that organisation (any more).",
  invalid_token: "That pool token is not valid (it was mistyped, already used or has expired): ask an admin of the organisation for a new one.",
  output_not_released: ({ message }) => {
    const state = /\b(requested|approved|refused|none)\b/.exec(message)?.[1];
    const why: Record<string, string> = {
      none: "ask for its release on the job page",
      requested: "its release is waiting for a data steward's decision",
      approved: "its release was approved and is being copied from the pool's store; try again in a moment",
      refused: "a data steward refused its release",
    };
    return `That output is kept on the organisation's store and has not been released${state ? `: ${why[state]}` : ""}.`;
  },
  cap_too_low: ({ fields, message }) => {
    // A group's cap must cover one task's cap; a group's task cap is the job's cap, renamed.
    const group = /task_max_cost_micros \((\d+)\)/.exec(fields.max_cost_micros ?? "");
    if (group) return `The group's cost cap must cover at least one task's cap: at least ${creditsWords(Number(group[1]))}.`;
    const perTask = /(\d+)/.exec(fields.task_max_cost_micros ?? "");
    if (perTask) return `Each task's cost cap must cover at least one minute on this machine: at least ${creditsWords(Number(perTask[1]))}.`;
    const minimum = /(\d+)/.exec(fields.max_cost_micros ?? "") ?? /\((\d+)\)/.exec(message);
    return minimum
      ? `The cost cap must cover at least one minute on this machine: at least ${creditsWords(Number(minimum[1]))}.`
      : "The cost cap must cover at least one minute on this machine.";
  },
  // 401
  not_authenticated: "Please log in.",
  authentication_failed: "Your sign-in has expired or was revoked; please log in again.",
  // 402
  insufficient_credits: (said) => groupHoldsShort(said.message) ?? moneyShort("Not enough credits", "this")(said),
  member_cap_exceeded: memberCapShort,
  hold_exceeded: moneyShort("The job has used its whole cost cap", "this charge"),
  insufficient_earnings: moneyShort("Not enough earnings are available yet", "this payout"),
  // 403
  permission_denied: "You are not allowed to do that.",
  staff_required: "Only staff can see this page.",
  enrollment_token_invalid: "That enrollment command is not valid; create a new one on the Hosting page.",
  enrollment_token_expired: "That enrollment command has expired; create a new one on the Hosting page.",
  enrollment_token_used: "That enrollment command was already used; create a new one on the Hosting page.",
  account_restricted:
    "Your account owes credits after a refund or dispute: new jobs and payouts are paused until you buy credits to cover it.",
  // 404
  not_found: "That was not found (it may have been removed, or it isn't yours).",
  hold_not_found: "That job's hold was not found.",
  payment_not_found: "That payment was not found.",
  payout_not_found: "That payout was not found.",
  // 405, 409
  method_not_allowed: "That action is not available here.",
  conflict: withDetail("That can't be done now"),
  already_member: "That person is already a member.",
  last_admin: "You are the last admin: make someone else an admin first.",
  idempotency_key_in_progress: "The same request is still being processed; wait a moment and try again.",
  transaction_key_reused: "That payment was already recorded with other amounts; contact support.",
  hold_owner_mismatch: "That hold belongs to another account.",
  payout_account_not_ready: "Finish setting up your payout account (the Stripe step) before asking for a payout.",
  no_host_fits: "No machine you may use fits this job right now: lower the cores, memory, GPUs or timeout, or try again later.",
  job_finished: "The job has already finished.",
  group_finished: "The group has already ended: there is nothing left to cancel.",
  transition_refused: withDetail("The job can't change that way now"),
  stale_attempt: "That report was for an earlier attempt of the job.",
  offset_mismatch: "The upload got out of step with the server; press Retry to go on from where the server is.",
  in_use: "That file is used by a job of yours that hasn't finished; delete it after the job ends.",
  retry: "That didn't go through; try again.",
  unbalanced_transaction: "That transaction doesn't balance; nothing was recorded.",
  output_mismatch: "An output file didn't match what the host reported.",
  too_many_outputs: "The job wrote too many output files.",
  // 413
  file_too_large: withDetail("A file is too large"),
  files_too_large: withDetail("The job's files are too large together"),
  code_too_large: withDetail("The code is too large"),
  archive_too_large: withDetail("The zip file is too large"),
  too_large: withDetail("That is too large to send"),
  // blobs, uploads and job inputs (docs/data.md)
  quota_exceeded: ({ message }) => {
    const detail = humanizeAmounts(message.trim()).replace(/\.$/, "");
    return `Not enough storage left for this file${detail ? ` (${detail})` : ""}: delete stored files you no longer need (Wallet, Storage), then press Retry.`;
  },
  inputs_too_large: withDetail("The job's inputs are too large together"),
  too_many_inputs: withDetail("The job has too many inputs"),
  offer_too_large: withDetail("The job's inputs and files don't fit one offer to a host: use fewer inputs or shorter paths"),
  invalid_disk: withDetail("A disk limit is out of range"),
  chunk_too_large: "A part of the upload was larger than the server accepts; press Retry to send it again.",
  request_too_large: "That upload is larger than the server accepts; send less at a time.",
  undeclared_output: "The host sent an output file the job did not declare; it was not kept.",
  upload_window_closed: "The host sent this too long after the job finished; it was not kept.",
  // 415, 422, 429, 5xx
  unsupported_media_type: "The request was sent in a form the server does not accept; reload the page and try again.",
  unprocessable: withDetail("That can't be done"),
  idempotency_key_reused: "A different request already used this retry key; reload the page and submit again.",
  throttled: ({ message }) => {
    const wait = /available in (\d+) seconds?/.exec(message);
    return wait ? `Too many requests; try again in ${wait[1]} seconds.` : "Too many requests; wait a moment and try again.";
  },
  server_error: "Something went wrong on our side; nothing was changed. Try again in a moment.",
  payment_provider_error: "The payment provider didn't answer; try again (you won't be charged twice).",
};

/** Errors without our envelope (a proxy's 502, an HTML 404): by status. */
export const STATUS_SENTENCES: Record<number, string> = {
  400: "The request was refused.",
  401: "Please log in.",
  403: "You are not allowed to do that.",
  404: "That was not found.",
  413: "That is too large to send.",
  429: "Too many requests; wait a moment and try again.",
  500: "Something went wrong on our side; try again in a moment.",
  502: "The server is unavailable; try again shortly.",
  503: "The server is unavailable; try again shortly.",
  504: "The server took too long to answer; try again shortly.",
};

/** Bare codes the API puts in `fields` instead of a message ({"amount_micros": "out_of_range"}). */
export const FIELD_CODE_SENTENCES: Record<string, string> = {
  out_of_range: "This amount is outside the allowed range.",
  below_minimum: "This amount is below the minimum.",
  not_whole_cents: "Use whole cents: at most two decimals.",
  required: "This is required.",
  invalid: "This is not valid.",
  blank: "This can't be empty.",
  null: "This is required.",
};

const BARE_CODE = /^[a-z]+(?:_[a-z0-9]+)*$/;

/** The sentence for an error code, given what the server said. */
export function sentenceFor(code: string, status: number, message: string, fields: Record<string, string>): string {
  const sentence = ERROR_SENTENCES[code];
  if (typeof sentence === "function") return sentence({ message, fields });
  if (typeof sentence === "string") return sentence;
  // A code this app does not know yet: the server's message, if it reads as a sentence.
  if (message && !BARE_CODE.test(message.trim())) return humanizeAmounts(message);
  return STATUS_SENTENCES[status] ?? `The request failed (status ${status}).`;
}

/** A refusal of the zip as the job's code (field `archive_sha256`) as a sentence for the
 * Files field: the server's reasons name neither the zip nor what to do. */
function archiveSentence(message: string, code: string): string {
  const detail = humanizeAmounts(message.trim()).replace(/\.$/, "");
  if (code === "unknown_blob" || /\bno blob\b/.test(detail))
    return "The zip is not among your stored files (it was deleted, or its upload did not finish): remove it and pick it again.";
  const work = /more than (\d+) MB/.exec(detail);
  if (code === "archive_too_large" || work)
    return `The zip unpacks to more than /work holds${work ? ` (${work[1]} MB)` : ""}: raise “Space in /work” under Advanced: disk limits, or make the zip smaller.`;
  if (!detail || BARE_CODE.test(detail)) return "The zip can't be the job's code: remove it and pick another.";
  // bad_archive's reasons go on from "the archive": "is not a zip file", "has more than …".
  return `The zip can't be the job's code: ${/^(is|has|can't)\b/.test(detail) ? "it " : ""}${detail}.`;
}

/** Field and setting names a server's field message may quote, in words. */
function plainNames(text: string): string {
  return text.replace(/\btask_max_cost_micros\b/g, "the cost cap per task").replace(/\s*\([A-Z][A-Z0-9_]{3,}\)/g, "");
}

/** A field's message in words: a bare code becomes a sentence; amounts of a `_micros` field
 * become credits; a refusal of the zip says what to do. `code` is the error's own code. */
export function fieldSentence(field: string, message: string, code = ""): string {
  if (field === "archive_sha256") return archiveSentence(message, code);
  const text = message.trim();
  if (BARE_CODE.test(text)) {
    const known = ERROR_SENTENCES[text];
    return FIELD_CODE_SENTENCES[text] ?? (typeof known === "string" ? known : "This is not valid.");
  }
  // Only a money field's bare numbers are credits ("at least 60000"); elsewhere they count things.
  if (!/_micros$/.test(field)) return humanizeUnits(plainNames(text));
  const humanized = humanizeAmounts(plainNames(text));
  return humanized.replace(/\b(\d{4,})\b(?! credits?)/g, (n) => creditsWords(Number(n)));
}

const FIELD_LABELS: Record<string, string> = {
  max_cost_micros: "Cost cap",
  amount_micros: "Amount",
  cpus: "CPU cores",
  memory_mb: "Memory",
  gpus: "GPUs",
  timeout_seconds: "Timeout",
  requirements: "Requirements",
  entrypoint: "File to run",
  code: "Code",
  files: "Files",
  archive: "Zip file",
  archive_sha256: "Zip file",
  host: "Machine",
  placement: "Placement",
  email: "Email",
  password: "Password",
  name: "Name",
  "Idempotency-Key": "Retry key",
  inputs: "Inputs",
  sha256: "sha256",
  disk: "Disk limits",
  work_mb: "Space in /work",
  outputs_mb: "Space in /outputs",
  tmp_mb: "Space in /tmp",
  work_exec: "Executables in /work",
  shared_inputs: "Inputs",
  task_max_cost_micros: "Cost cap per task",
  count: "Number of tasks",
  max_parallel: "Tasks at once",
  host_fault_retries: "Retries after a host fault",
  error_retries: "Retries after a script error",
  pool: "Run in",
  pool_required: "Members must use the pool",
  pool_hidden: "Keep the pool's machines out of the public catalog",
  pool_fetch_networks: "Networks inputs may be fetched from",
  pool_fetch_hosts: "Host names inputs may be fetched from",
  pool_job_networks: "Networks jobs may reach",
  pool_members_free: "Members run free",
  pool_output_store: "Output store",
  endpoint_url: "Endpoint URL",
  bucket: "Bucket",
  prefix: "Prefix",
  region: "Region",
  pool_logs: "Logs",
  pool_airlock: "Airlock",
  role: "Role",
  is_steward: "Data steward",
  monthly_cap_micros: "Monthly cap",
  username: "Username",
  token: "Pool token",
  note: "Note",
  "Upload-Offset": "Upload offset",
  "Upload-Length": "File size",
};

/** A field's name as a label: "max_cost_micros" -> "Cost cap", "files.0.path" -> "Files, 1st path". */
export function fieldLabel(key: string): string {
  // "inputs[2].sha256" is "inputs.2.sha256"
  const [head = key, ...rest] = key.replace(/\[(\d+)\]/g, ".$1").split(".");
  const label = FIELD_LABELS[head] ?? head.replace(/_micros$/, "").replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
  if (!rest.length) return label;
  return `${label} (${rest.map((part) => (/^\d+$/.test(part) ? `item ${Number(part) + 1}` : part.replace(/_/g, " "))).join(", ")})`;
}
