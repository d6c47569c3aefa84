// Private pools (issue 15, docs/pools.md): every call the pool pages make to endpoints that are
// not in the generated schema yet, with hand-written types, in this one module. When
// `make frontend-schema` has them, each type here becomes an alias of components["schemas"][…]
// (as types.ts does) and each call moves to `typed`, so a renamed field fails `tsc`; until
// then a field the servers name differently is fixed here, once.
//
// The organisations themselves (list, create, detail, members list/add/remove) are in the
// schema: endpoints.ts has them, typed.

import { request } from "./client";
import { ApiError } from "./errors";
import type { components } from "./schema";
import type { CatalogPage, Page, PaymentResult } from "./types";

type Schemas = components["schemas"];

export type OrgRole = Schemas["RoleEnum"];

/** An organisation as one of its members sees it (GET /organisations/, /organisations/{id}/),
 * with the member's own steward flag if the server adds it (else read from the members list). */
export type Organisation = Schemas["OrganisationOutput"] & { is_steward?: boolean };

/** Where a pool job's log goes: to the server, the pool's store, or nowhere (sizes only). */
export type PoolLogs = "central" | "store" | "redacted";

/** The S3-compatible store on the institution's side; its credentials are on the hosts. */
export interface OutputStore {
  endpoint_url: string;
  bucket: string;
  prefix: string;
  region: string;
}

/** GET PATCH /api/v1/organisations/{id}/pool/ (admins PATCH, members read). */
export interface PoolSettings {
  pool_required: boolean;
  pool_hidden: boolean;
  pool_fetch_networks: string[];
  pool_fetch_hosts: string[];
  pool_job_networks: string[];
  pool_members_free: boolean;
  /** {} when the outputs go to the central store. */
  pool_output_store: OutputStore | Record<string, never>;
  pool_logs: PoolLogs;
  pool_airlock: boolean;
}

/** A member as the members list shows it; the pool fields once the server sends them. */
export type PoolMember = Schemas["MemberOutput"] & {
  is_steward?: boolean;
  /** What the member may spend of the organisation's wallet per calendar month; null: no cap. */
  monthly_cap_micros?: number | null;
};

/** PATCH /api/v1/organisations/{id}/members/{username}/ (admins). */
export interface MemberPatch {
  role?: OrgRole;
  is_steward?: boolean;
  monthly_cap_micros?: number | null;
}

/** POST /api/v1/organisations/{id}/host-tokens/: the token, shown once. */
export interface HostToken {
  token: string;
  expires_at: string | null;
}

/** GET /api/v1/organisations/{id}/wallet/ (admins). */
export interface OrgWallet {
  balance_micros: number;
  held_micros: number;
  available_micros: number;
}

/** GET /api/v1/organisations/{id}/wallet/me/: the member's own calendar month (UTC). */
export interface MemberMonth {
  /** "2026-12" or the month's first day. */
  month?: string;
  /** Charged this month plus what the member's open pool jobs hold. */
  spent_micros: number;
  /** The member's monthly cap; null: none of their own (the wallet's balance is the limit). */
  cap_micros: number | null;
}

/** GET /api/v1/organisations/{id}/wallet/transactions/: the organisation wallet's lines. */
export interface OrgLedgerLine {
  id: number;
  created_at: string;
  kind: string;
  amount_micros: number;
  memo?: string;
  job_id?: number | null;
  transaction_id?: number;
  /** Who spent (hold, release): the member whose pool job this line is for. */
  member?: number | null;
  member_username?: string | null;
  /** Who bought (purchase) or granted (grant). */
  by_username?: string | null;
}

export type ReportGroup = "member" | "host";

/** A row of the organisation's report: the key fields of its group_by, then figures. Every
 * `_micros` figure is money, every `_seconds` one time; the page shows those it gets. */
export interface PoolReportRow {
  username?: string | null;
  member?: number | null;
  host?: number | null;
  host_name?: string | null;
  jobs?: number;
  [figure: string]: unknown;
}

/** GET /api/v1/organisations/{id}/reports/?from=&to=&group_by=member|host. */
export interface PoolReport {
  from: string;
  to: string;
  group_by: ReportGroup;
  rows: PoolReportRow[];
  totals: Record<string, unknown>;
}

/** One line of the pool's audit trail (newest first). */
export interface AuditEvent {
  id: number;
  at: string;
  kind: string;
  /** The username of who did it; null for the system (a job that ended). */
  actor: string | null;
  job_id: number | null;
  host_id: number | null;
  detail: Record<string, unknown>;
}

export interface AuditFilters {
  kind?: string;
  job?: string;
  from?: string;
  to?: string;
  page?: number;
}

/** Where an output is kept: the central store, or the pool's own (not downloadable until released). */
export type OutputLocation = "central" | "pool";
export type ReleaseState = "none" | "requested" | "approved" | "refused" | "released";

/** What a job's output adds for pools (merged into the job's outputs in types.ts). */
export interface OutputPoolView {
  location?: OutputLocation;
  release_status?: ReleaseState;
  release_note?: string;
}

/** GET /api/v1/organisations/{id}/releases/: one release request, for a steward to decide. */
export interface ReleaseRequest {
  id: number;
  job_id: number;
  name: string;
  size: number | null;
  sha256: string;
  status: ReleaseState;
  requested_by: string | null;
  requested_at: string | null;
  decided_by?: string | null;
  decided_at?: string | null;
  note?: string;
}

/** What a submit and a quote add: the organisation whose pool runs the job. */
export interface PoolSpec {
  pool?: number;
}

/** What a job adds: its pool (an organisation id) and where its log went. */
export interface JobPoolView {
  pool?: number | null;
  /** Where the job's log went; absent: read from the pool's settings. */
  pool_logs?: PoolLogs;
}

/** The release state of an output, read in one place (a server without pools: "none"). */
export function outputRelease(output: OutputPoolView): { location: OutputLocation; state: ReleaseState; note: string } {
  return { location: output.location ?? "central", state: output.release_status ?? "none", note: output.release_note ?? "" };
}

const org = (id: number) => `/api/v1/organisations/${id}`;

/** The settings endpoint names them without the model's `pool_` prefix (`required`,
 * `output_store`); the app keeps the prefixed names. Converted here, field errors included
 * (`output_store.bucket` -> `pool_output_store.bucket`). */
/** The report sends seconds as exact decimal strings ("12.5"); the table shows numbers. */
function secondsAsNumbers<T extends Record<string, unknown>>(row: T): T {
  return Object.fromEntries(
    Object.entries(row).map(([key, value]) => [key, key.endsWith("_seconds") && typeof value === "string" ? Number(value) : value]),
  ) as T;
}

function settingsFromApi(raw: Record<string, unknown>): PoolSettings {
  return Object.fromEntries(Object.entries(raw).map(([key, value]) => [`pool_${key}`, value])) as unknown as PoolSettings;
}

function settingsToApi(patch: Partial<PoolSettings>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(patch).map(([key, value]) => [key.replace(/^pool_/, ""), value]));
}

function settingsErrorFromApi(error: unknown): unknown {
  if (!(error instanceof ApiError)) return error;
  const fields = Object.fromEntries(Object.entries(error.fields).map(([key, value]) => [key === "body" ? key : `pool_${key}`, value]));
  return new ApiError(error.status, error.code, error.message, fields, error.serverMessage);
}

export const pools = {
  settings: (id: number): Promise<PoolSettings> =>
    request<Record<string, unknown>>("GET", `${org(id)}/pool/`).then(settingsFromApi),
  settingsUpdate: (id: number, patch: Partial<PoolSettings>): Promise<PoolSettings> =>
    request<Record<string, unknown>>("PATCH", `${org(id)}/pool/`, { body: settingsToApi(patch) }).then(
      settingsFromApi,
      (error: unknown) => Promise.reject(settingsErrorFromApi(error)),
    ),
  memberUpdate: (id: number, username: string, patch: MemberPatch): Promise<PoolMember> =>
    request("PATCH", `${org(id)}/members/${encodeURIComponent(username)}/`, { body: patch }),
  hostTokenCreate: (id: number): Promise<HostToken> => request("POST", `${org(id)}/host-tokens/`),
  /** The pool's hosts (members): the catalog filtered by `pool`. */
  hosts: (id: number, cursor?: string, filters: Record<string, string | number | boolean> = {}): Promise<CatalogPage> =>
    request("GET", "/api/v1/hosts/", { query: { ...filters, pool: id, cursor } }),
  hostJoin: (hostId: number, token: string): Promise<unknown> => request("POST", `/api/v1/my/hosts/${hostId}/pool/`, { body: { token } }),
  hostLeave: (hostId: number): Promise<unknown> => request("DELETE", `/api/v1/my/hosts/${hostId}/pool/`),

  wallet: (id: number): Promise<OrgWallet> => request("GET", `${org(id)}/wallet/`),
  walletMe: (id: number): Promise<MemberMonth> => request("GET", `${org(id)}/wallet/me/`),
  walletTransactions: (id: number, page = 1): Promise<Page<OrgLedgerLine>> => request("GET", `${org(id)}/wallet/transactions/`, { query: { page } }),
  /** Admins buy credits for the organisation: the same providers and answer as a user's top-up. */
  paymentCreate: (id: number, amount_micros: number, idempotencyKey: string): Promise<PaymentResult> =>
    request("POST", `${org(id)}/wallet/payments/`, { body: { amount_micros }, headers: { "Idempotency-Key": idempotencyKey } }),

  report: (id: number, from: string, to: string, group_by: ReportGroup): Promise<PoolReport> =>
    request<PoolReport>("GET", `${org(id)}/reports/`, { query: { from, to, group_by, format: "json" } }).then((report) => ({
      ...report,
      rows: report.rows.map(secondsAsNumbers),
      totals: secondsAsNumbers(report.totals),
    })),
  audit: (id: number, filters: AuditFilters): Promise<Page<AuditEvent>> => request("GET", `${org(id)}/audit/`, { query: { ...filters } }),

  releases: (id: number, status: ReleaseState | "" = "requested"): Promise<Page<ReleaseRequest>> =>
    request("GET", `${org(id)}/releases/`, { query: { status } }),
  releaseApprove: (id: number, releaseId: number, note: string): Promise<ReleaseRequest> =>
    request("POST", `${org(id)}/releases/${releaseId}/approve/`, { body: { note } }),
  releaseRefuse: (id: number, releaseId: number, note: string): Promise<ReleaseRequest> =>
    request("POST", `${org(id)}/releases/${releaseId}/refuse/`, { body: { note } }),
  /** The renter asks for an output kept on the pool's store. */
  outputRelease: (jobId: number, name: string): Promise<unknown> =>
    request("POST", `/api/v1/jobs/${jobId}/outputs/${name.split("/").map(encodeURIComponent).join("/")}/release/`),
};

export function poolReportCsvUrl(id: number, from: string, to: string, group_by: ReportGroup): string {
  return `${org(id)}/reports/?${new URLSearchParams({ from, to, group_by, format: "csv" }).toString()}`;
}

export function auditCsvUrl(id: number, filters: AuditFilters): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value !== undefined && value !== "" && key !== "page") params.set(key, String(value));
  params.set("format", "csv");
  return `${org(id)}/audit/?${params.toString()}`;
}
