// The Run page's "Run over inputs" mode: a job group (docs/jobs.md "Job groups"). The job form is
// the template every task is; this adds the tasks (one per argument, or a count), how many run
// at once, the group's cap and the retries, and builds the POST /api/v1/job-groups/ body.
import type { JobGroupSpec, JobSpec } from "../api/types";
import { creditsToMicros, creditsWords } from "./money";

/** The server's limits (config/settings: JOB_GROUP_*). */
export const JOB_GROUP_MAX_TASKS = 10_000;
export const JOB_GROUP_MAX_PARALLEL = 500;
export const JOB_GROUP_MAX_RETRIES = 10;
export const JOB_GROUP_ARGUMENT_MAX_BYTES = 64 * 1024;

export type RunMode = "job" | "group";

export interface GroupForm {
  /** One task per argument, or `count` tasks without arguments. */
  tasks: "arguments" | "count";
  /** JSON Lines (one argument a line) or one JSON array (one argument an item). */
  argumentsText: string;
  count: string;
  maxParallel: string;
  /** The group's cap: what all its tasks together may cost. */
  capCredits: string;
  hostFaultRetries: string;
  errorRetries: string;
}

export const DEFAULT_GROUP_FORM: GroupForm = {
  tasks: "arguments",
  argumentsText: "",
  count: "10",
  maxParallel: "10",
  capCredits: "10",
  hostFaultRetries: "3",
  errorRetries: "0",
};

export type ArgumentsRead = { ok: true; arguments: unknown[]; format: "array" | "lines" } | { ok: false; problem: string };

const encoder = new TextEncoder();

/** JSON.parse, or undefined for text that is not JSON. */
function jsonOf(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

function linesRead(text: string): ArgumentsRead {
  const found: unknown[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    const parsed = jsonOf(line);
    if (!parsed) return { ok: false, problem: `Line ${i + 1} is not JSON: each line is one task's argument, such as {"seed": 1} or "a.csv".` };
    found.push(parsed.value);
  }
  return { ok: true, arguments: found, format: "lines" };
}

/** The arguments' own limits: how many, and each at most 64 KB as JSON. */
function argumentsChecked(read: ArgumentsRead): ArgumentsRead {
  if (!read.ok) return read;
  const { arguments: found } = read;
  if (!found.length) return { ok: false, problem: "Give at least one task's argument: one JSON value a line, or a JSON array." };
  if (found.length > JOB_GROUP_MAX_TASKS) return { ok: false, problem: `At most ${JOB_GROUP_MAX_TASKS.toLocaleString("en")} tasks in a group (there are ${found.length.toLocaleString("en")}).` };
  const big = found.findIndex((argument) => encoder.encode(JSON.stringify(argument)).length > JOB_GROUP_ARGUMENT_MAX_BYTES);
  if (big >= 0) return { ok: false, problem: `Task #${big}'s argument is larger than 64 KB as JSON: put bigger data in an input file and name it in the argument.` };
  return read;
}

/**
 * The tasks' arguments from the text area: a JSON array is one task per item; anything else is
 * JSON Lines, one task per non-empty line. Each task reads its argument at /inputs/task.json.
 */
export function taskArgumentsRead(text: string): ArgumentsRead {
  const trimmed = text.trim();
  if (!trimmed) return { ok: false, problem: "Give at least one task's argument: one JSON value a line, or a JSON array." };
  const whole = trimmed.startsWith("[") ? jsonOf(trimmed) : undefined;
  if (whole && Array.isArray(whole.value)) return argumentsChecked({ ok: true, arguments: whole.value, format: "array" });
  return argumentsChecked(linesRead(text));
}

/** A whole number from `min` to `max`, or null. */
function wholeIn(text: string, min: number, max: number): number | null {
  const value = Number(text.trim());
  return /^\d+$/.test(text.trim()) && value >= min && value <= max ? value : null;
}

/** How many tasks the form makes, or null while that is not known. */
export function taskCount(group: GroupForm, read: ArgumentsRead): number | null {
  if (group.tasks === "count") return wholeIn(group.count, 1, JOB_GROUP_MAX_TASKS);
  return read.ok ? read.arguments.length : null;
}

/**
 * The group's own problems, keyed by the names the Run page shows them under: `task_arguments`,
 * `count`, `max_parallel`, `group_cap`, `host_fault_retries`, `error_retries`. `taskCapMicros`
 * is the job form's cap, each task's.
 */
export function groupProblems(group: GroupForm, read: ArgumentsRead, taskCapMicros: number | null): Record<string, string> {
  const problems: Record<string, string> = {};
  if (group.tasks === "arguments" && !read.ok) problems.task_arguments = read.problem;
  if (group.tasks === "count" && wholeIn(group.count, 1, JOB_GROUP_MAX_TASKS) === null)
    problems.count = `A whole number of tasks, from 1 to ${JOB_GROUP_MAX_TASKS.toLocaleString("en")}.`;
  if (wholeIn(group.maxParallel, 1, JOB_GROUP_MAX_PARALLEL) === null) problems.max_parallel = `A whole number from 1 to ${JOB_GROUP_MAX_PARALLEL}.`;
  const cap = creditsToMicros(group.capCredits);
  if (cap === null || cap === 0) problems.group_cap = "A cost cap for the whole group in credits, e.g. 25.";
  else if (taskCapMicros && cap < taskCapMicros) problems.group_cap = `At least the cost cap per task (${creditsWords(taskCapMicros)}), so that one task can start.`;
  for (const key of ["hostFaultRetries", "errorRetries"] as const) {
    if (wholeIn(group[key], 0, JOB_GROUP_MAX_RETRIES) === null)
      problems[key === "hostFaultRetries" ? "host_fault_retries" : "error_retries"] = `A whole number from 0 to ${JOB_GROUP_MAX_RETRIES}.`;
  }
  return problems;
}

/**
 * The POST /api/v1/job-groups/ body: the job's submit (`specFrom`) as the template — its inputs
 * become every task's `shared_inputs`, its cap each task's `task_max_cost_micros` — and the
 * group's fields. Call it only when `groupProblems` found none.
 */
export function groupSpecFrom(job: JobSpec, group: GroupForm, read: ArgumentsRead): JobGroupSpec {
  const { inputs, max_cost_micros, ...template } = job;
  const spec: JobGroupSpec = {
    ...template,
    task_max_cost_micros: max_cost_micros,
    max_cost_micros: creditsToMicros(group.capCredits) ?? 0,
    max_parallel: Number(group.maxParallel),
    host_fault_retries: Number(group.hostFaultRetries),
    error_retries: Number(group.errorRetries),
  };
  if (inputs?.length) spec.shared_inputs = inputs;
  if (group.tasks === "count") spec.count = Number(group.count);
  else if (read.ok) spec.inputs = read.arguments.map((argument) => ({ argument }));
  return spec;
}

/** In group mode, the name the server gives a field the Run page shows under another name: the
 * job form's cap is each task's, its inputs are shared; the group's cap and the tasks'
 * arguments are the group's `max_cost_micros` and `inputs`. */
export const GROUP_SERVER_NAME: Record<string, string> = {
  max_cost_micros: "task_max_cost_micros",
  inputs: "shared_inputs",
  group_cap: "max_cost_micros",
  task_arguments: "inputs",
};

/** A task's refusal ("inputs[3].argument", "inputs[1].inputs[0].sha256") as a sentence's start. */
export function taskFieldLead(key: string): string {
  const match = /^inputs\[(\d+)\](?:\.inputs\[(\d+)\](?:\.(\w+))?)?/.exec(key);
  if (!match) return "";
  const [, task, input, part] = match;
  return `Task #${task}${input !== undefined ? `, its input ${Number(input) + 1}${part ? ` (${part})` : ""}` : ""}: `;
}
