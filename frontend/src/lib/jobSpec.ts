import { DISK_DEFAULTS, isSha256, JOB_INPUTS_MAX_COUNT, type DiskLimits, type JobInputSpec } from "../api/blobs";
import type { JobSpec, QuoteSpec } from "../api/types";
import { inputPathProblem } from "./dropFiles";
import { creditsToMicros } from "./money";
import { textToBase64, type UploadedFile } from "./files";

export interface RunForm {
  /** What to call the job; empty: the server names it after the entrypoint's file. */
  name: string;
  code: string;
  entrypoint: string;
  requirements: string;
  files: UploadedFile[];
  cpus: string;
  memoryGb: string;
  gpus: string;
  timeoutMinutes: string;
  capCredits: string;
  placement: "auto" | "host";
  host: string;
  /** Where it runs: "" the public marketplace, else an organisation's id (its private pool). */
  pool: string;
  /** Inputs the agent fetches from a URL (the uploaded ones live in lib/inputUploads.ts). */
  inputUrls: UrlInput[];
  workMb: string;
  outputsMb: string;
  tmpMb: string;
  workExec: boolean;
}

/** An "Add by URL" row: where under /inputs, the https URL and the sha256 the bytes must have. */
export interface UrlInput {
  key: string;
  path: string;
  url: string;
  sha256: string;
}

export const DEFAULT_CODE = `import platform

print("Hello from", platform.node(), platform.machine())
for i in range(5):
    print("step", i, flush=True)
`;

export const DEFAULT_FORM: RunForm = {
  name: "",
  code: DEFAULT_CODE,
  entrypoint: "main.py",
  requirements: "",
  files: [],
  cpus: "1",
  memoryGb: "1",
  gpus: "0",
  timeoutMinutes: "10",
  capCredits: "1",
  placement: "auto",
  host: "",
  pool: "",
  inputUrls: [],
  workMb: String(DISK_DEFAULTS.work_mb),
  outputsMb: String(DISK_DEFAULTS.outputs_mb),
  tmpMb: String(DISK_DEFAULTS.tmp_mb),
  workExec: false,
};

export function requirementLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
}

/** Why an https URL can't be an input, or null (the server checks the host's address too). */
export function inputUrlProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "A full URL, such as https://data.example.org/train.csv.";
  }
  if (url.protocol !== "https:") return "Only https:// URLs can be fetched.";
  if (url.username || url.password) return "No user name or password in the URL.";
  if (text.length > 4096) return "At most 4096 characters.";
  return null;
}

/** The disk limits as typed, or null for a field that is not a whole number of MB ≥ 1. */
function diskFrom(form: RunForm): Record<keyof DiskLimits, number | null> {
  const mb = (text: string) => (/^\d+$/.test(text.trim()) && Number(text) >= 1 ? Number(text) : null);
  return { work_mb: mb(form.workMb), outputs_mb: mb(form.outputsMb), tmp_mb: mb(form.tmpMb) };
}

/**
 * The disk limits to send: only a change is sent, so the server's defaults stand otherwise
 * (and a server without disk limits still takes the job). Null too while a field is not a
 * number: that problem holds the submit back, and the quote goes on without the limits.
 */
export function diskChangeFrom(form: RunForm): DiskLimits | null {
  const { work_mb, outputs_mb, tmp_mb } = diskFrom(form);
  if (work_mb === null || outputs_mb === null || tmp_mb === null) return null;
  const unchanged = work_mb === DISK_DEFAULTS.work_mb && outputs_mb === DISK_DEFAULTS.outputs_mb && tmp_mb === DISK_DEFAULTS.tmp_mb;
  return unchanged ? null : { work_mb, outputs_mb, tmp_mb };
}

/** The problems of the inputs (URL rows and uploaded files' paths) and the disk limits. */
function dataProblems(form: RunForm, uploadPaths: string[]): Record<string, string> {
  const problems: Record<string, string> = {};
  const rows: string[] = [];
  form.inputUrls.forEach((row, index) => {
    const path = row.path.trim();
    const why =
      (inputPathProblem(path) && `path: ${inputPathProblem(path)}`) ??
      (inputUrlProblem(row.url.trim()) && `URL: ${inputUrlProblem(row.url.trim())}`) ??
      (!isSha256(row.sha256.trim().toLowerCase()) ? "sha256: 64 hexadecimal digits, as sha256sum prints them." : null);
    if (why) rows.push(`URL input ${index + 1}, ${why}`);
  });
  const paths = [...uploadPaths, ...form.inputUrls.map((row) => row.path.trim())];
  const twice = [...new Set(paths.filter((path, i) => path && paths.indexOf(path) !== i))];
  if (twice.length) rows.push(`Two inputs have the same path: ${twice.map((p) => `“${p}”`).join(", ")}.`);
  if (paths.length > JOB_INPUTS_MAX_COUNT) rows.push(`At most ${JOB_INPUTS_MAX_COUNT} inputs per job (there are ${paths.length}).`);
  if (rows.length) problems.inputs = rows.join(" ");
  const disk = diskFrom(form);
  if (Object.values(disk).some((v) => v === null)) problems.disk = "Each disk limit is a whole number of MB, at least 1.";
  return problems;
}

/** Local checks before asking the server; null when the spec can be sent. */
export function localProblems(form: RunForm, uploadPaths: string[] = []): Record<string, string> {
  const problems: Record<string, string> = {};
  const entrypoint = form.entrypoint.trim();
  if (!entrypoint) problems.entrypoint = "Name the file to run.";
  else if (!entrypoint.endsWith(".py")) problems.entrypoint = "The file to run must end in .py.";
  else if (entrypoint.startsWith("/") || entrypoint.split("/").includes("..") || entrypoint.includes("\\"))
    problems.entrypoint = "A relative path inside the job, such as main.py or src/train.py.";
  const badLines = requirementLines(form.requirements)
    .map((line, index) => ({ line, index }))
    .filter(({ line }) => line.startsWith("-") || line.includes("://") || / @ /.test(line) || line.startsWith(".") || line.startsWith("/"));
  if (badLines.length)
    problems.requirements = `One package specifier per line (no options, URLs or paths): ${badLines.map(({ line }) => `“${line}”`).join(", ")}.`;
  if (!(Number(form.cpus) > 0)) problems.cpus = "At least some CPU is needed.";
  if (!form.code.trim() && !form.files.length) problems.code = "Write the code to run, or upload files or a zip.";
  if (!(Number(form.memoryGb) > 0)) problems.memory_mb = "Give the job some memory.";
  if (!(Number(form.gpus) >= 0) || !Number.isInteger(Number(form.gpus))) problems.gpus = "A whole number of GPUs.";
  if (!(Number(form.timeoutMinutes) > 0)) problems.timeout_seconds = "A timeout is needed.";
  if (creditsToMicros(form.capCredits) === null || creditsToMicros(form.capCredits) === 0)
    problems.max_cost_micros = "A cost cap in credits, e.g. 2.50.";
  if (form.placement === "host" && !form.host) problems.host = "Choose a machine, or use automatic placement.";
  const zips = form.files.filter((f) => f.isZip).length;
  if (zips > 1 || (zips === 1 && form.files.length > 1)) problems.files = "Upload one zip, or plain files — not both.";
  return { ...problems, ...dataProblems(form, uploadPaths) };
}

/**
 * The bytes the job's data takes on its host besides its file systems, as the submit counts
 * them: the uploaded input files and the zip as the code. A URL input counts 0: the form does
 * not know its size.
 */
export function inputsBytesFrom(form: RunForm, inputFileBytes: number): number {
  return inputFileBytes + form.files.filter((f) => f.isZip).reduce((sum, f) => sum + f.size, 0);
}

/**
 * The POST body for /quotes/: only what prices a job or decides where it fits (the code does
 * not). `inputFileBytes` is the total size of the uploaded input files.
 */
export function quoteSpecFrom(form: RunForm, inputFileBytes = 0): QuoteSpec {
  const spec: QuoteSpec = {
    cpus: Number(form.cpus),
    memory_mb: Math.round(Number(form.memoryGb) * 1024),
    gpus: Number(form.gpus),
    timeout_seconds: Math.round(Number(form.timeoutMinutes) * 60),
    max_cost_micros: creditsToMicros(form.capCredits) ?? 0,
    inputs_bytes: inputsBytesFrom(form, inputFileBytes),
  };
  if (form.placement === "host" && form.host) spec.host = Number(form.host);
  if (form.pool) spec.pool = Number(form.pool);
  const disk = diskChangeFrom(form);
  if (disk) spec.disk = disk;
  return spec;
}

/**
 * The JSON body for /jobs/. The code goes one of three ways: a zip as `archive_sha256` (it is
 * uploaded to the blob store first: `archiveSha256` is its digest); the editor's code alone as
 * `code`; or with uploaded files, as `files`, where the editor's text becomes the entrypoint
 * file unless a file of that name was uploaded.
 */
export function specFrom(form: RunForm, uploaded: JobInputSpec[] = [], archiveSha256: string | null = null): JobSpec {
  const entrypoint = form.entrypoint.trim();
  const spec: JobSpec = {
    entrypoint,
    requirements: requirementLines(form.requirements),
    cpus: Number(form.cpus),
    memory_mb: Math.round(Number(form.memoryGb) * 1024),
    gpus: Number(form.gpus),
    timeout_seconds: Math.round(Number(form.timeoutMinutes) * 60),
    max_cost_micros: creditsToMicros(form.capCredits) ?? 0,
    ...codeFrom(form, archiveSha256),
  };
  if (form.name.trim()) spec.name = form.name.trim();
  if (form.placement === "host" && form.host) spec.host = Number(form.host);
  else spec.placement = "auto";
  if (form.pool) spec.pool = Number(form.pool);
  const inputs = inputsFrom(form, uploaded);
  if (inputs.length) spec.inputs = inputs;
  const disk = diskChangeFrom(form);
  if (disk) spec.disk = disk;
  if (form.workExec) spec.work_exec = true;
  return spec;
}

/** How the job's code is sent: the zip's digest, the files, or the editor's code. */
function codeFrom(form: RunForm, archiveSha256: string | null): Pick<JobSpec, "code" | "files" | "archive_sha256"> {
  if (form.files.some((f) => f.isZip)) {
    if (!archiveSha256) throw new Error("The zip must be uploaded before the job is sent.");
    return { archive_sha256: archiveSha256 };
  }
  if (!form.files.length) return { code: form.code };
  const entrypoint = form.entrypoint.trim();
  const files = form.files.map((f) => ({ path: f.path, content_b64: f.content_b64 }));
  // Plain files travel with the editor's code as the entrypoint, unless one has its name.
  if (!form.files.some((f) => f.path === entrypoint) && form.code.trim()) {
    files.unshift({ path: entrypoint, content_b64: textToBase64(form.code) });
  }
  return { files };
}

/** The inputs a submit names: the uploaded files, then the URL rows (sha256 in lowercase). */
export function inputsFrom(form: RunForm, uploaded: JobInputSpec[]): JobInputSpec[] {
  return [
    ...uploaded,
    ...form.inputUrls.map((row) => ({ path: row.path.trim(), url: row.url.trim(), sha256: row.sha256.trim().toLowerCase() })),
  ];
}
