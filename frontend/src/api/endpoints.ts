// Every call the pages make, in one place. Paths and field names follow API.md.
import { rawRequest, request, typed, unwrap } from "./client";
import { ApiError } from "./errors";
import { textToBase64 } from "../lib/files";
import type { BlobHolding, BlobQuota, UploadCreated, UploadStart } from "./blobs";
import type { OrgRole, PoolMember } from "./pools";
import type {
  BillingGroup,
  BillingReport,
  Earnings,
  CatalogPage,
  Enrollment,
  HostListing,
  HostFilters,
  OwnedHost,
  HostPatch,
  Job,
  JobGroup,
  JobGroupDetail,
  JobGroupSpec,
  JobSpec,
  HistoryLine,
  LedgerLine,
  LogChunk,
  Page,
  PaymentResult,
  Payout,
  OutputFile,
  Quote,
  QuoteSpec,
  Receipt,
  UsageHistory,
  Reconciliation,
  SessionResult,
  User,
  Wallet,
} from "./types";

/**
 * The schema types JSON fields (a host's `gpus`, `availability_policy`) as `unknown`; types.ts
 * derives the precise types from the schema's own (so a renamed field still fails to compile)
 * and this narrows the loose JSON fields at the one boundary.
 */
function precise<T>(pending: Promise<unknown>): Promise<T> {
  return pending as Promise<T>;
}

export const api = {
  // --- accounts (typed: in the generated schema) -------------------------------------------
  csrf: () => unwrap(typed.GET("/api/v1/auth/csrf/")),
  me: (): Promise<User> => unwrap(typed.GET("/api/v1/auth/me/")),
  signup: (body: { username: string; email: string; password: string }): Promise<SessionResult> =>
    unwrap(typed.POST("/api/v1/auth/signup/", { body })),
  login: (body: { username: string; password: string }): Promise<SessionResult> =>
    unwrap(typed.POST("/api/v1/auth/login/", { body })),
  logout: () => unwrap(typed.POST("/api/v1/auth/logout/")),

  // --- organisations (typed; their pools' calls are in pools.ts until the schema has them) ---
  organisations: () => unwrap(typed.GET("/api/v1/organisations/", { params: { query: { page_size: 500 } } })),
  organisationCreate: (name: string) => unwrap(typed.POST("/api/v1/organisations/", { body: { name } })),
  organisation: (id: number) =>
    unwrap(typed.GET("/api/v1/organisations/{organisation_id}/", { params: { path: { organisation_id: id } } })),
  /** The members with their pool fields (is_steward, monthly_cap_micros) once the server sends them. */
  members: (id: number) =>
    precise<Page<PoolMember>>(
      unwrap(typed.GET("/api/v1/organisations/{organisation_id}/members/", { params: { path: { organisation_id: id }, query: { page_size: 500 } } })),
    ),
  memberAdd: (id: number, username: string, role: OrgRole) =>
    unwrap(typed.POST("/api/v1/organisations/{organisation_id}/members/", { params: { path: { organisation_id: id } }, body: { username, role } })),
  memberRemove: (id: number, username: string) =>
    unwrap(
      typed.DELETE("/api/v1/organisations/{organisation_id}/members/{username}/", { params: { path: { organisation_id: id, username } } }),
    ),

  // --- wallet and payments ----------------------------------------------------------------
  wallet: (): Promise<Wallet> => unwrap(typed.GET("/api/v1/wallet/")),
  transactions: (page = 1, of: { job?: number; transaction?: number } = {}): Promise<Page<LedgerLine>> =>
    unwrap(typed.GET("/api/v1/wallet/transactions/", { params: { query: { page, ...of } } })),
  // JSON here (the schema also lists the CSV form, a string, which WALLET_HISTORY_CSV_URL links to).
  walletHistory: (page = 1) =>
    precise<Page<HistoryLine>>(unwrap(typed.GET("/api/v1/wallet/history/", { params: { query: { page, format: "json" } } }))),
  paymentCreate: (amount_micros: number, idempotencyKey: string): Promise<PaymentResult> =>
    unwrap(
      typed.POST("/api/v1/payments/", {
        body: { amount_micros },
        params: { header: { "Idempotency-Key": idempotencyKey } },
      }),
    ),

  // --- catalog and hosts -----------------------------------------------------------------
  hosts: (filters: HostFilters) =>
    precise<CatalogPage>(unwrap(typed.GET("/api/v1/hosts/", { params: { query: filters } }))),
  host: (id: number) =>
    precise<HostListing>(unwrap(typed.GET("/api/v1/hosts/{host_id}/", { params: { path: { host_id: id } } }))),
  enrollmentCreate: (name: string): Promise<Enrollment> =>
    unwrap(typed.POST("/api/v1/hosts/enrollments/", { body: { name } })),
  myHosts: () => precise<Page<OwnedHost>>(unwrap(typed.GET("/api/v1/my/hosts/"))),
  myHost: (id: number) =>
    precise<OwnedHost>(unwrap(typed.GET("/api/v1/my/hosts/{host_id}/", { params: { path: { host_id: id } } }))),
  myHostUpdate: (id: number, patch: HostPatch) =>
    precise<OwnedHost>(
      unwrap(typed.PATCH("/api/v1/my/hosts/{host_id}/", { params: { path: { host_id: id } }, body: patch })),
    ),

  // --- jobs -------------------------------------------------------------------------------
  quote: (spec: QuoteSpec, signal?: AbortSignal): Promise<Quote> =>
    unwrap(typed.POST("/api/v1/quotes/", { body: spec, signal })),
  jobSubmit: (body: JobSpec, idempotencyKey: string) =>
    precise<Job>(unwrap(typed.POST("/api/v1/jobs/", { body, params: { header: { "Idempotency-Key": idempotencyKey } } }))),
  jobs: (page = 1) => precise<Page<Job>>(unwrap(typed.GET("/api/v1/jobs/", { params: { query: { page } } }))),
  job: (id: number) =>
    precise<Job>(unwrap(typed.GET("/api/v1/jobs/{job_id}/", { params: { path: { job_id: id } } }))),
  jobCancel: (id: number) =>
    precise<Job>(unwrap(typed.POST("/api/v1/jobs/{job_id}/cancel/", { params: { path: { job_id: id } } }))),
  jobLogs: (id: number, offset: number, attempt?: number) => logsFetch(id, offset, attempt),
  jobOutputs: (id: number): Promise<Page<OutputFile>> =>
    unwrap(typed.GET("/api/v1/jobs/{job_id}/outputs/", { params: { path: { job_id: id }, query: { page_size: 500 } } })),
  jobUsage: (id: number): Promise<UsageHistory> =>
    unwrap(typed.GET("/api/v1/jobs/{job_id}/usage/", { params: { path: { job_id: id } } })),
  jobReceipt: (id: number): Promise<Receipt> =>
    unwrap(typed.GET("/api/v1/jobs/{job_id}/receipt/", { params: { path: { job_id: id } } })),

  // --- job groups (docs/jobs.md "Job groups") ----------------------------------------------
  groupCreate: (body: JobGroupSpec, idempotencyKey: string): Promise<JobGroupDetail> =>
    unwrap(typed.POST("/api/v1/job-groups/", { body, params: { header: { "Idempotency-Key": idempotencyKey } } })),
  groups: (page = 1): Promise<Page<JobGroup>> => unwrap(typed.GET("/api/v1/job-groups/", { params: { query: { page } } })),
  /** The group with one page of its tasks, by index (only those in `status` when given). */
  group: (id: number, tasks: { page?: number; page_size?: number; status?: string } = {}): Promise<JobGroupDetail> =>
    unwrap(typed.GET("/api/v1/job-groups/{group_id}/", { params: { path: { group_id: id }, query: tasks } })),
  groupCancel: (id: number): Promise<JobGroup> =>
    unwrap(typed.POST("/api/v1/job-groups/{group_id}/cancel/", { params: { path: { group_id: id } } })),

  // --- blobs and uploads (hand-typed in blobs.ts until the schema has them) -----------------
  /** Whether the user already holds these bytes (HEAD /blobs/{sha256}/: 200 yes, 404 no). */
  blobHeld: async (sha256: string): Promise<boolean> => {
    try {
      await rawRequest("HEAD", `/api/v1/blobs/${sha256}/`);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return false;
      throw err;
    }
  },
  blobs: (page = 1): Promise<Page<BlobHolding>> => request("GET", "/api/v1/blobs/", { query: { page } }),
  blobQuota: (): Promise<BlobQuota> => request("GET", "/api/v1/blobs/quota/"),
  blobDelete: (sha256: string): Promise<void> => request("DELETE", `/api/v1/blobs/${sha256}/`),
  uploadCreate: (size: number, sha256: string, filename: string) => uploadCreate(size, sha256, filename),

  // --- host owners: earnings and payouts ---------------------------------------------------
  earnings: () =>
    precise<Earnings>(unwrap(typed.GET("/api/v1/earnings/", { params: { query: { page_size: 500 } } }))),
  // The schema declares a bare list, but the view answers a page ({count, results}); accept both.
  payouts: (): Promise<Page<Payout>> =>
    precise<Page<Payout> | Payout[]>(unwrap(typed.GET("/api/v1/payouts/"))).then((data) =>
      Array.isArray(data) ? { count: data.length, results: data } : data,
    ),
  payoutOnboarding: () => unwrap(typed.POST("/api/v1/payouts/onboarding/")),
  payoutCreate: (amount_micros: number, idempotencyKey: string): Promise<Payout> =>
    unwrap(
      typed.POST("/api/v1/payouts/", {
        body: { amount_micros },
        params: { header: { "Idempotency-Key": idempotencyKey } },
      }),
    ),

  // --- staff reports ----------------------------------------------------------------------
  // JSON here (the schema also lists the CSV form, a string, which billingCsvUrl links to).
  billingReport: (from: string, to: string, group_by: BillingGroup) =>
    precise<BillingReport>(
      unwrap(typed.GET("/api/v1/admin/reports/billing/", { params: { query: { from, to, group_by, format: "json" } } })),
    ),
  reconciliation: (): Promise<Reconciliation> => unwrap(typed.GET("/api/v1/admin/reports/reconciliation/")),
};

export const WALLET_HISTORY_CSV_URL = "/api/v1/wallet/history/?format=csv";

export function billingCsvUrl(from: string, to: string, group_by: string): string {
  const params = new URLSearchParams({ from, to, group_by, format: "csv" });
  return `/api/v1/admin/reports/billing/?${params.toString()}`;
}

export function outputUrl(jobId: number, name: string): string {
  return `/api/v1/jobs/${jobId}/outputs/${name.split("/").map(encodeURIComponent).join("/")}`;
}

const encoder = new TextEncoder();

/** Byte length of UTF-8 text: log offsets count bytes, not UTF-16 code units. */
export function utf8Length(text: string): number {
  return encoder.encode(text).length;
}

/**
 * GET /api/v1/jobs/{id}/logs/?offset=N. The contract says "log bytes from offset"; accept both
 * a JSON body ({offset, data|text, next_offset}) and raw text (next offset = offset + bytes).
 */
export async function logsFetch(id: number, offset: number, attempt?: number): Promise<LogChunk> {
  const response = await rawRequest("GET", `/api/v1/jobs/${id}/logs/`, { query: { offset, attempt } });
  const type = response.headers.get("Content-Type") ?? "";
  if (type.includes("json")) {
    const body = (await response.json()) as Record<string, unknown>;
    const data = String(body.data ?? body.text ?? body.content ?? body.log ?? "");
    const start = typeof body.offset === "number" ? body.offset : offset;
    const next =
      typeof body.next_offset === "number"
        ? body.next_offset
        : typeof body.end_offset === "number"
          ? body.end_offset
          : start + utf8Length(data);
    const complete =
      typeof body.is_complete === "boolean" ? body.is_complete : typeof body.complete === "boolean" ? body.complete : undefined;
    const attemptOf = typeof body.attempt === "number" ? body.attempt : undefined;
    return { attempt: attemptOf, offset: start, data, next_offset: next, complete, truncated: body.truncated === true };
  }
  const data = await response.text();
  const header = response.headers.get("X-Log-Offset");
  const start = header !== null && header !== "" ? Number(header) : offset;
  return { offset: start, data, next_offset: start + utf8Length(data) };
}

export const TUS_VERSION = "1.0.0";

/**
 * tus creation (POST /api/v1/uploads/) through the app's own client, so a refusal (quota,
 * size) comes back as an ApiError with its sentence, and "already held, nothing to send"
 * (201 with Upload-Offset = length, status complete) needs no PATCH at all. tus-js-client then
 * continues from the returned URL (HEAD, PATCH, retries).
 */
export async function uploadCreate(size: number, sha256: string, filename: string): Promise<UploadStart> {
  const response = await rawRequest("POST", "/api/v1/uploads/", {
    headers: {
      "Tus-Resumable": TUS_VERSION,
      "Upload-Length": String(size),
      "Upload-Metadata": `sha256 ${textToBase64(sha256)},filename ${textToBase64(filename)}`,
    },
  });
  let body: Partial<UploadCreated> = {};
  try {
    body = (await response.json()) as Partial<UploadCreated>;
  } catch {
    body = {};
  }
  const location = response.headers.get("Location") ?? (body.id ? `/api/v1/uploads/${body.id}/` : "");
  if (!location) throw new ApiError(response.status, "bad_response", "The server did not say where to send the file; try again.");
  const header = response.headers.get("Upload-Offset");
  const offset = header !== null && header !== "" ? Number(header) : (body.offset ?? 0);
  const base = typeof window !== "undefined" ? window.location.origin : "http://localhost";
  return { url: new URL(location, base).toString(), offset, complete: body.status === "complete" || offset >= size };
}
