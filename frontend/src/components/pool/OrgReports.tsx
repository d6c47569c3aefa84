import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { auditCsvUrl, poolReportCsvUrl, pools, type AuditFilters, type PoolReportRow, type ReportGroup } from "../../api/pools";
import { useLoad } from "../../lib/hooks";
import { formatDateTime, formatDuration } from "../../lib/money";
import { ErrorBanner } from "../ErrorBanner";
import { Field } from "../Field";
import { Money } from "../Money";
import { Loading } from "../Progress";

/** The audit trail's kinds (jobs/audit_models.py AuditKind), in words. */
export const AUDIT_KINDS: Record<string, string> = {
  "job.submitted": "Job submitted",
  "job.inputs_read": "Inputs read",
  "job.finished": "Job finished",
  "output.kept": "Output kept on the pool's store",
  "output.release_requested": "Output release requested",
  "output.release_approved": "Output release approved",
  "output.release_refused": "Output release refused",
  "output.released": "Output released to the renter",
  "host.joined": "Host joined the pool",
  "host.left": "Host left the pool",
  "pool.settings_changed": "Pool settings changed",
};

/** The report's figures in words; a figure not named here is labelled from its name. */
const FIGURE_LABELS: Record<string, string> = {
  jobs: "Jobs",
  cpu_seconds: "CPU time",
  gpu_seconds: "GPU time",
  wall_seconds: "Run time",
  gross_charges_micros: "Charged",
  charged_micros: "Charged",
  usage_micros: "Usage",
  metered_micros: "Usage at the hosts' rates",
  platform_fees_micros: "Platform fee",
  host_earnings_micros: "Host earnings",
  reversals_micros: "Reversed",
  refunds_micros: "Refunded",
  refunded_micros: "Refunded",
};

const KEY_FIELDS = new Set(["username", "user", "member", "host", "host_name", "owner", "owner_username", "day", "label"]);

function figureLabel(key: string): string {
  return FIGURE_LABELS[key] ?? key.replace(/_(micros|seconds)$/, "").replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

/** The numeric figures the rows carry, in a stable order (the labelled ones first). */
export function reportColumns(rows: Record<string, unknown>[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const [key, value] of Object.entries(row)) if (!KEY_FIELDS.has(key) && typeof value === "number") seen.add(key);
  const order = Object.keys(FIGURE_LABELS);
  return [...seen].sort((a, b) => (order.indexOf(a) === -1 ? 99 : order.indexOf(a)) - (order.indexOf(b) === -1 ? 99 : order.indexOf(b)) || a.localeCompare(b));
}

function Figure({ name, value }: { name: string; value: unknown }) {
  if (typeof value !== "number") return <>—</>;
  if (name.endsWith("_micros")) return <Money micros={value} />;
  if (name.endsWith("_seconds")) return <>{formatDuration(value)}</>;
  return <>{value.toLocaleString("en-US")}</>;
}

function rowName(row: PoolReportRow, group: ReportGroup): string {
  if (group === "member") return row.username ?? (row.member != null ? `User #${row.member}` : "—");
  return row.host_name || (row.host != null ? `Host #${row.host}` : "No machine");
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

export function monthStart(now = new Date()): string {
  return `${now.toISOString().slice(0, 7)}-01`;
}

export function ReportsSection({ orgId }: { orgId: number }) {
  const [from, setFrom] = useState(monthStart());
  const [to, setTo] = useState(isoDay(new Date()));
  const [group, setGroup] = useState<ReportGroup>("member");
  const valid = /^\d{4}-\d{2}-\d{2}$/.test(from) && /^\d{4}-\d{2}-\d{2}$/.test(to) && from <= to;
  const report = useLoad(() => (valid ? pools.report(orgId, from, to, group) : Promise.resolve(null)), [orgId, from, to, group, valid]);
  const rows = report.data?.rows ?? [];
  const columns = reportColumns([...rows, ...(report.data ? [report.data.totals] : [])]);
  return (
    <section aria-labelledby="org-reports-h">
      <h2 id="org-reports-h">Reports</h2>
      <p className="small">The pool jobs&apos; usage and what the organisation paid, per member or per machine (free member usage included, at no charge).</p>
      <div className="inline-form">
        <Field label="From" error={valid ? undefined : "Choose a start date on or before the end date."}>
          <input type="date" value={from} onChange={(e) => setFrom(e.target.value)} />
        </Field>
        <Field label="To">
          <input type="date" value={to} onChange={(e) => setTo(e.target.value)} />
        </Field>
        <Field label="Per">
          <select value={group} onChange={(e) => setGroup(e.target.value as ReportGroup)}>
            <option value="member">Member</option>
            <option value="host">Machine</option>
          </select>
        </Field>
        {valid && (
          <a className="button" href={poolReportCsvUrl(orgId, from, to, group)} download>
            Download CSV
          </a>
        )}
      </div>
      {report.error !== null && <ErrorBanner error={report.error} />}
      {report.loading && !report.data && <Loading />}
      {report.data && rows.length === 0 && <p>No pool jobs in this period.</p>}
      {report.data && rows.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="org-report">
            <caption className="visually-hidden">
              Per {group === "member" ? "member" : "machine"}, {report.data.from} to {report.data.to}
            </caption>
            <thead>
              <tr>
                <th scope="col">{group === "member" ? "Member" : "Machine"}</th>
                {columns.map((c) => (
                  <th key={c} scope="col" className="num">
                    {figureLabel(c)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((row, index) => (
                <tr key={`${row.username ?? ""}-${row.host ?? ""}-${index}`}>
                  <th scope="row" data-label={group === "member" ? "Member" : "Machine"}>
                    {rowName(row, group)}
                  </th>
                  {columns.map((c) => (
                    <td key={c} data-label={figureLabel(c)} className="num">
                      <Figure name={c} value={row[c]} />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                <th scope="row" data-label="">
                  Total
                </th>
                {columns.map((c) => (
                  <td key={c} data-label={figureLabel(c)} className="num">
                    <Figure name={c} value={report.data!.totals[c]} />
                  </td>
                ))}
              </tr>
            </tfoot>
          </table>
        </div>
      )}
    </section>
  );
}

/** One line of an event's detail, short: the fields people look for first. */
function detailSummary(detail: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const key of ["name", "entrypoint", "status", "exit_code", "note", "fields"]) {
    const value = detail[key];
    if (value === undefined || value === null || value === "") continue;
    parts.push(`${key.replace(/_/g, " ")}: ${typeof value === "object" ? Object.keys(value as object).join(", ") : String(value)}`);
  }
  return parts.join(" · ");
}

export function AuditSection({ orgId }: { orgId: number }) {
  const [draft, setDraft] = useState<AuditFilters>({ kind: "", job: "", from: "", to: "" });
  const [filters, setFilters] = useState<AuditFilters>({ page: 1 });
  const [local, setLocal] = useState<string | undefined>();
  const events = useLoad(() => pools.audit(orgId, filters), [orgId, JSON.stringify(filters)]);
  const apply = (event: FormEvent) => {
    event.preventDefault();
    if (draft.job && !/^\d+$/.test(draft.job.trim())) {
      setLocal("A job number, such as 42.");
      return;
    }
    setLocal(undefined);
    setFilters({ ...draft, job: draft.job?.trim(), page: 1 });
  };
  const page = filters.page ?? 1;
  return (
    <section aria-labelledby="org-audit-h">
      <h2 id="org-audit-h">Audit</h2>
      <p className="small">Everything that happened in the pool, newest first: who ran what (the digests of its code and requirements), what it read, and what left. Nothing here is ever changed or removed.</p>
      <form className="inline-form" onSubmit={apply} noValidate aria-label="Audit filters">
        <Field label="What">
          <select value={draft.kind} onChange={(e) => setDraft((d) => ({ ...d, kind: e.target.value }))}>
            <option value="">Everything</option>
            {Object.entries(AUDIT_KINDS).map(([kind, label]) => (
              <option key={kind} value={kind}>
                {label}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Job" error={local}>
          <input inputMode="numeric" value={draft.job} onChange={(e) => setDraft((d) => ({ ...d, job: e.target.value }))} placeholder="any" />
        </Field>
        <Field label="From">
          <input type="date" value={draft.from} onChange={(e) => setDraft((d) => ({ ...d, from: e.target.value }))} />
        </Field>
        <Field label="To">
          <input type="date" value={draft.to} onChange={(e) => setDraft((d) => ({ ...d, to: e.target.value }))} />
        </Field>
        <button type="submit">Show</button>
        <a className="button" href={auditCsvUrl(orgId, filters)} download>
          Download CSV
        </a>
      </form>
      {events.error !== null && <ErrorBanner error={events.error} />}
      {events.loading && !events.data && <Loading />}
      {events.data && events.data.results.length === 0 && <p>Nothing recorded{filters.kind || filters.job || filters.from || filters.to ? " that matches" : " yet"}.</p>}
      {events.data && events.data.results.length > 0 && (
        <>
          <div className="table-wrap">
            <table className="stack" data-testid="audit">
              <caption className="visually-hidden">The pool&apos;s audit trail, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">What</th>
                  <th scope="col">Who</th>
                  <th scope="col">Job</th>
                  <th scope="col">Machine</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {events.data.results.map((e) => (
                  <tr key={e.id}>
                    <td data-label="When">{formatDateTime(e.at)}</td>
                    <td data-label="What">{AUDIT_KINDS[e.kind] ?? e.kind}</td>
                    <td data-label="Who">{e.actor ?? "the system"}</td>
                    <td data-label="Job">{e.job_id != null ? <Link to={`/jobs/${e.job_id}`}>#{e.job_id}</Link> : "—"}</td>
                    <td data-label="Machine">{e.host_id != null ? <Link to={`/hosts/${e.host_id}`}>#{e.host_id}</Link> : "—"}</td>
                    <td data-label="Detail" className="wrap">
                      {detailSummary(e.detail ?? {})}
                      {e.detail && Object.keys(e.detail).length > 0 && (
                        <details className="small">
                          <summary>All of it</summary>
                          <pre className="wrap">{JSON.stringify(e.detail, null, 2)}</pre>
                        </details>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="Audit pages">
            <button type="button" disabled={!events.data.previous} onClick={() => setFilters((f) => ({ ...f, page: page - 1 }))}>
              Previous
            </button>
            <span>
              Page {page} · {events.data.count.toLocaleString("en-US")} in all
            </span>
            <button type="button" disabled={!events.data.next} onClick={() => setFilters((f) => ({ ...f, page: page + 1 }))}>
              Next
            </button>
          </nav>
        </>
      )}
    </section>
  );
}
