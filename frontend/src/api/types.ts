// Shapes the pages rely on, from API.md and the issue texts. Fields marked optional are ones
// the contract does not name exactly; pages render them when present and cope when absent.
// When an endpoint lands in the generated schema, its type here becomes an alias of
// components["schemas"][…] so a mismatch is a compile error (see endpoints.ts).

import type { components, operations } from "./schema";
import type { JobDataSpec, JobDataView, JobInputSpec, JobOutputView } from "./blobs";
import type { JobPoolView, OutputPoolView, PoolSpec } from "./pools";

type Schemas = components["schemas"];

/** A paginated list (config.api.Pagination); the schema marks next/previous optional. */
export interface Page<T> {
  count: number;
  next?: string | null;
  previous?: string | null;
  results: T[];
}

/** GET /api/v1/auth/me/ (the page config's `user` has the same fields). */
export type User = Pick<Schemas["UserOutput"], "id" | "username" | "email" | "is_staff">;

/** What sign-up and log-in return (they also start the browser session). */
export type SessionResult = Schemas["SessionOutput"];

export type Wallet = Schemas["WalletOutput"];

/** One of the user's ledger lines: a posting on their wallet or one of their job escrows. */
export type LedgerLine = Schemas["WalletLineOutput"];
/** GET /api/v1/wallet/history/: one line per job, host earnings per job, purchase, payout … */
export type HistoryLine = Schemas["WalletHistoryLineOutput"];
/** GET /api/v1/jobs/{id}/usage/: the stored samples per attempt and the timeline. */
export type UsageHistory = Schemas["UsageHistoryOutput"];

export type PaymentProvider = "demo" | "stripe";

/** POST /api/v1/payments/: the payment, plus the client secret and key Stripe.js needs. */
export type PaymentResult = Schemas["CheckoutOutput"];

export interface Gpu {
  model: string;
  memory_mb: number;
}

export type HostStatus = "online" | "busy" | "draining" | "offline";

export interface AvailabilityWindow {
  days: number[];
  start: string;
  end: string;
}

/** agent.protocol.AvailabilityPolicy (hosts/policy.py validates it). */
export interface AvailabilityPolicy {
  timezone: string;
  windows: AvailabilityWindow[];
  idle_minutes: number | null;
  /** Percent of all cores other processes may use before the host stops taking work. */
  max_load: number | null;
}

/** A catalog entry (GET /api/v1/hosts/, /hosts/{id}/); `gpus` is typed loosely by the schema. */
export type HostListing = Omit<Schemas["HostListingOutput"], "gpus"> & { gpus: Gpu[] };

/** The owner's view (GET /api/v1/my/hosts/): the listing plus policy and presence details. */
export type OwnedHost = Omit<Schemas["OwnedHostOutput"], "gpus" | "availability_policy"> & {
  gpus: Gpu[];
  availability_policy: AvailabilityPolicy;
};

/** What the pages read: every listing field, and the owner's extras where the owner asked. */
export type Host = HostListing &
  Partial<Pick<OwnedHost, "availability_policy" | "unavailable_reason" | "has_live_credential" | "flagged_reports">>;

export type HostFilters = NonNullable<operations["hosts_list"]["parameters"]["query"]>;

/**
 * A catalog page (paged by cursor: `next`/`previous` carry it). `count` is exact unless
 * `count_is_capped`: then more than `count` hosts match (docs/api.md, Pagination).
 */
export type CatalogPage = Omit<Schemas["PaginatedHostListingOutputList"], "results"> & { results: HostListing[] };

export type Enrollment = Schemas["EnrollmentOutput"];

export type HostPatch = Omit<Schemas["PatchedHostUpdateInputRequest"], "availability_policy"> & {
  availability_policy?: AvailabilityPolicy;
};

/** POST /api/v1/jobs/ as JSON (a zip is uploaded first and named by `archive_sha256`: the app
 * sends no multipart `archive`); the data fields (inputs, disk, work_exec) are typed by hand
 * in blobs.ts until the schema has them. */
export type JobSpec = Omit<Schemas["JobCreateRequest"], "archive" | "requirements" | "files" | keyof JobDataSpec> & {
  requirements: string[];
  files?: { path: string; content_b64: string }[];
} & JobDataSpec &
  PoolSpec;

/** POST /api/v1/quotes/: only what prices a job. */
export type QuoteSpec = Schemas["QuoteRequestRequest"] & PoolSpec;
export type Quote = Schemas["Quote"];
export type QuoteHost = Schemas["HostQuote"];

export type JobStatus = Schemas["JobStatusEnum"] | "lost";

/** One step of a job's history, as the live socket reports it. */
export interface JobEvent {
  status: string;
  reason?: string;
  attempt?: number;
  at?: string;
}

/** A job's output; pools.ts adds where it is kept and its release state (docs/pools.md). */
export type OutputFile = Schemas["JobOutput"] & OutputPoolView;

export type Job = Omit<Schemas["Job"], "requirements" | keyof JobDataView | keyof JobPoolView> & { requirements: string[] } & Omit<JobDataView, "outputs"> & {
  outputs?: (JobOutputView & OutputPoolView)[];
} & JobPoolView;

/** A job group (docs/jobs.md "Job groups"): one job template run over many inputs, each task an
 * ordinary job. The list's shape; the detail adds a page of its tasks. */
export type JobGroup = Schemas["JobGroup"];
export type JobGroupDetail = Schemas["JobGroupDetail"];
export type GroupStatus = Schemas["JobGroupStatusEnum"];
export type GroupTask = Schemas["GroupTask"];
export type TaskStatus = Schemas["GroupTaskStatusEnum"];
export type TaskCounts = Schemas["TaskCounts"];

/** One task of a group's `inputs`: its argument (any JSON, read at /inputs/task.json) and its
 * own input files. */
export interface TaskSpec {
  argument?: unknown;
  inputs?: JobInputSpec[];
}

/** POST /api/v1/job-groups/: a submit's fields as the template every task is, with the job's
 * inputs as `shared_inputs` and its cap as `task_max_cost_micros`; `max_cost_micros` is the
 * group's cap; `inputs` (one per task) or `count`. */
export type JobGroupSpec = Omit<JobSpec, "inputs"> & {
  shared_inputs?: JobInputSpec[];
  inputs?: TaskSpec[];
  count?: number;
  max_parallel: number;
  task_max_cost_micros: number;
  host_fault_retries: number;
  error_retries: number;
};

/** GET /api/v1/jobs/{id}/logs/?offset=N[&attempt=K] (LogPage), as the log view uses it. */
export interface LogChunk {
  attempt?: number | null;
  offset: number;
  data: string;
  next_offset: number;
  complete?: boolean;
  truncated?: boolean;
}

export type UsageLine = Schemas["UsageLineOutput"];
export type ReceiptAttempt = Schemas["AttemptReceiptOutput"];
export type ReceiptTotals = Schemas["ReceiptTotalsOutput"];
export type Receipt = Schemas["ReceiptOutput"];
export type EarningsLine = Schemas["EarningsJobLineOutput"];

/**
 * GET /api/v1/earnings/: a page of per-job lines in `results`, plus the totals, which the view
 * adds to the page but the schema does not declare (ledger/apis.py EarningsApi).
 */
export type Earnings = Schemas["PaginatedEarningsJobLineOutputList"] & {
  pending_micros: number;
  available_micros: number;
  in_payout_micros: number;
  paid_micros: number;
};

export type Payout = Schemas["PayoutOutput"];

export type BillingFigures = Schemas["BillingFiguresOutput"];
export type BillingGroup = Schemas["GroupByEnum"];

/** A row of the billing report; the totals row has only the figures (and a label). */
export type BillingRow = BillingFigures &
  Partial<Omit<Schemas["BillingRowOutput"], keyof BillingFigures>> & { period?: string };

export type BillingReport = Schemas["BillingReportOutput"];

export type ReconciliationProblem = Schemas["ProblemOutput"];
export type ReconciliationRun = Schemas["ReconciliationRunOutput"];
export type Reconciliation = Schemas["ReconciliationReportOutput"];

/** The page config the Django view embeds in index.html (config/spa.py). */
export interface PageConfig {
  /** Who is logged in; absent when the page was not served by Django (vite dev). */
  user?: User | null;
  payment_provider: PaymentProvider | string;
  stripe_publishable_key: string | null;
  stripe_js_url: string | null;
  public_url: string;
  purchase_min_micros?: number;
  purchase_max_micros?: number;
  payout_min_micros?: number;
  platform_fee_bps?: number;
}
