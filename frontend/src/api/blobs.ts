// Hand-written types for the data plane (issue 13: blobs, tus uploads, job inputs and disk
// limits), coded against the contract while the server side lands. When `make frontend-schema`
// regenerates schema.d.ts with these endpoints, each type here becomes an alias of
// components["schemas"][…] (as types.ts does), so a renamed field fails `tsc`.

/** A sha256 as the API writes it: 64 lowercase hex digits. */
export type Sha256 = string;

/** POST /api/v1/uploads/ (tus creation): the JSON body beside Location and Upload-Offset. */
export interface UploadCreated {
  id: string;
  offset: number;
  length: number;
  sha256: Sha256;
  /** "complete" when the user already held these bytes: nothing to send. */
  status: "uploading" | "complete" | "failed" | "aborted" | string;
}

/** Where a created upload is, and whether anything is left to send. */
export interface UploadStart {
  /** The upload's URL (Location), absolute, for tus-js-client's HEAD and PATCH. */
  url: string;
  offset: number;
  complete: boolean;
}

export type BlobOrigin = "upload" | "output" | string;

/** GET /api/v1/blobs/ and /blobs/{sha256}/: one of the user's holdings. */
export interface BlobHolding {
  sha256: Sha256;
  size: number;
  name: string;
  origin: BlobOrigin;
  created_at: string;
  last_used_at: string | null;
}

/** GET /api/v1/blobs/quota/. */
export interface BlobQuota {
  used_bytes: number;
  limit_bytes: number;
  uploading_bytes: number;
}

/** A job input as submitted: a blob the user holds, or a URL the agent fetches (https). */
export type JobInputSpec = { path: string; sha256: Sha256 } | { path: string; url: string; sha256: Sha256 };

/** The job's disk limits in MB (`disk` on submit and on the job). */
export interface DiskLimits {
  work_mb: number;
  outputs_mb: number;
  tmp_mb: number;
}

/** The server's defaults (JOB_WORK_MB, JOB_OUTPUTS_MB, JOB_TMP_MB); only a change is sent. */
export const DISK_DEFAULTS: DiskLimits = { work_mb: 1024, outputs_mb: 1024, tmp_mb: 256 };

/** What a job submit adds for data (merged into JobSpec in types.ts). */
export interface JobDataSpec {
  inputs?: JobInputSpec[];
  disk?: DiskLimits;
  work_exec?: boolean;
}

/** A job's input as the job detail lists it. */
export interface JobInputView {
  path: string;
  sha256: Sha256;
  size: number | null;
  source: "store" | "url" | string;
  url: string;
}

/** A job's output as the job detail lists it. */
export interface JobOutputView {
  name: string;
  size: number;
  sha256: Sha256;
}

/** What the job detail adds for data; optional, so a server without it still renders. */
export interface JobDataView {
  inputs?: JobInputView[];
  outputs?: JobOutputView[];
  disk?: DiskLimits | null;
  work_exec?: boolean;
}

/** At most this many inputs per job (JOB_INPUTS_MAX_COUNT). */
export const JOB_INPUTS_MAX_COUNT = 1000;

/** The tus PATCH size the server accepts (BLOB_UPLOAD_CHUNK_MAX_BYTES). */
export const UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;

export function isSha256(text: string): boolean {
  return /^[0-9a-f]{64}$/.test(text);
}
