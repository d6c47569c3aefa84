import { useState } from "react";
import { api, billingCsvUrl } from "../api/endpoints";
import type { BillingFigures, BillingReport, BillingRow, Reconciliation } from "../api/types";
import { Chart } from "../components/Chart";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Loading } from "../components/Progress";
import { useLoad } from "../lib/hooks";
import { creditsText, formatCredits, formatDateTime } from "../lib/money";

// ledger/reports.py's figures (docs/reports.md defines each), in the order a person reads them.
const PREFERRED = [
  "gross_charges_micros",
  "platform_fees_micros",
  "host_earnings_micros",
  "payouts_micros",
  "credits_bought_micros",
  "grants_micros",
  "refunds_micros",
  "reversals_micros",
];
/**
 * The per-day charts, each on its own scale: money coming in (bought, granted) is often far
 * larger than what jobs earn, and on one axis the earnings would vanish.
 */
const CHARTS: { title: string; figures: string[] }[] = [
  { title: "Money in per day: credits bought and granted", figures: ["credits_bought_micros", "grants_micros"] },
  { title: "Money earned per day: revenue, platform fees, payouts", figures: ["gross_charges_micros", "platform_fees_micros", "payouts_micros"] },
];
const LABELS: Record<string, string> = {
  gross_charges_micros: "Revenue (gross charges)",
  platform_fees_micros: "Platform fees",
  host_earnings_micros: "Host earnings",
  payouts_micros: "Payouts",
  credits_bought_micros: "Credits bought",
  grants_micros: "Grants",
  refunds_micros: "Refunds",
  reversals_micros: "Reversals",
};

export function rowsOf(report: BillingReport | undefined): BillingRow[] {
  if (!report) return [];
  return report.rows;
}

type Figure = keyof BillingFigures;

/** The money columns a report carries, in a stable, sensible order. */
export function moneyColumns(rows: BillingRow[]): Figure[] {
  const keys = new Set<Figure>();
  rows.forEach((row) => Object.keys(row).forEach((k) => k.endsWith("_micros") && keys.add(k as Figure)));
  return [...keys].sort((a, b) => {
    const ia = PREFERRED.indexOf(a);
    const ib = PREFERRED.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
}

export function columnLabel(key: string): string {
  if (LABELS[key]) return LABELS[key];
  const base = key.replace(/_micros$/, "").replace(/_/g, " ");
  return base.charAt(0).toUpperCase() + base.slice(1);
}

function rowLabel(row: BillingRow): string {
  if (row.day) return String(row.day);
  if (row.period) return String(row.period);
  if (row.host !== undefined && row.host !== null) {
    return `${row.host_name || `Host #${row.host}`}${row.owner_username ? ` (${row.owner_username})` : ""}`;
  }
  if (row.username) return String(row.username);
  if (row.user !== undefined && row.user !== null) return `User #${row.user}`;
  return "";
}

/** Rows with some money moved: a day of zeros says nothing. */
export function activeRows(rows: BillingRow[], columns: Figure[]): BillingRow[] {
  return rows.filter((row) => columns.some((c) => Number(row[c] ?? 0) !== 0));
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function ReportTable({ rows, caption, head }: { rows: BillingRow[]; caption: string; head: string }) {
  const columns = moneyColumns(rows);
  return (
    <div className="table-wrap">
      <table>
        <caption>{caption}</caption>
        <thead>
          <tr>
            <th scope="col">{head}</th>
            {columns.map((c) => (
              <th scope="col" className="num" key={c}>{columnLabel(c)}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={`${rowLabel(row)}-${i}`}>
              <th scope="row">{rowLabel(row)}</th>
              {columns.map((c) => (
                <td className="num" key={c}>{formatCredits(row[c])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ReconciliationCard({ data }: { data: Reconciliation }) {
  const run = data.last_run;
  return (
    <section aria-labelledby="recon-h" className={`card ${run ? (run.is_clean ? "card-ok" : "card-bad") : ""}`}>
      <h2 id="recon-h">Ledger reconciliation</h2>
      {run === null ? (
        <p role="status" data-testid="reconciliation">
          No reconciliation has run yet: the first runs about a minute after Celery beat starts (<code>RECONCILE_FIRST_RUN_SECONDS</code>), then every 15 minutes by default (<code>RECONCILE_INTERVAL_MINUTES</code>).
        </p>
      ) : (
        <>
          <p role="status" data-testid="reconciliation">
            <strong>
              {run.is_clean
                ? "Clean: every invariant holds."
                : `${run.problem_count} problem${run.problem_count === 1 ? "" : "s"} found.`}
            </strong>{" "}
            <span className="muted">
              Last check {formatDateTime(run.finished_at)} · {run.accounts_checked} accounts, {run.transactions_checked}{" "}
              transactions
            </span>
          </p>
          {run.problems.length > 0 && (
            <div className="table-wrap">
              <table>
                <caption>Problems</caption>
                <thead>
                  <tr>
                    <th scope="col">Invariant</th>
                    <th scope="col">What</th>
                    <th scope="col">Where</th>
                    <th scope="col" className="num">Expected</th>
                    <th scope="col" className="num">Actual</th>
                  </tr>
                </thead>
                <tbody>
                  {run.problems.map((p, i) => (
                    <tr key={i}>
                      <td><code>{p.invariant}</code></td>
                      <td>{p.message}</td>
                      <td className="small">
                        {[
                          p.account_id !== null ? `account ${p.account_id}` : null,
                          p.transaction_id !== null ? `transaction ${p.transaction_id}` : null,
                          p.job_id !== null ? `job ${p.job_id}` : null,
                        ]
                          .filter(Boolean)
                          .join(", ")}
                      </td>
                      <td className="num">{p.expected_micros !== null ? formatCredits(p.expected_micros) : "—"}</td>
                      <td className="num">{p.actual_micros !== null ? formatCredits(p.actual_micros) : "—"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
      {data.invariants.length > 0 && (
        <details>
          <summary>What is checked</summary>
          <ul>
            {data.invariants.map((inv) => (
              <li key={inv.name}>
                <code>{inv.name}</code>: {inv.description}
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}

export function ReportsPage() {
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400_000);
  const [from, setFrom] = useState(isoDay(monthAgo));
  const [to, setTo] = useState(isoDay(today));
  const byDay = useLoad(() => api.billingReport(from, to, "day"), [from, to]);
  const recon = useLoad(() => api.reconciliation(), []);
  const dayRows = rowsOf(byDay.data);
  const columns = moneyColumns(dayRows);
  const busyDays = activeRows(dayRows, columns);
  const quietDays = dayRows.length - busyDays.length;
  const fieldErrors = (byDay.error as { fields?: Record<string, string> } | null)?.fields ?? {};


  return (
    <section>
      <h1>Billing reports</h1>
      <form className="inline-form" aria-label="Report period" onSubmit={(e) => e.preventDefault()}>
        <Field label="From" error={fieldErrors.from}>
          <input type="date" value={from} max={to} onChange={(e) => setFrom(e.target.value)} />
        </Field>
        <Field label="To" error={fieldErrors.to}>
          <input type="date" value={to} min={from} onChange={(e) => setTo(e.target.value)} />
        </Field>
        <a className="button" href={billingCsvUrl(from, to, "day")} download>
          Download CSV (per day)
        </a>
        <a className="button" href={billingCsvUrl(from, to, "host")} download>
          CSV per host
        </a>
        <a className="button" href={billingCsvUrl(from, to, "user")} download>
          CSV per renter
        </a>
      </form>
      {recon.data ? <ReconciliationCard data={recon.data} /> : recon.error ? <ErrorBanner error={recon.error} /> : <Loading />}
      {byDay.error !== null && !fieldErrors.from && !fieldErrors.to && <ErrorBanner error={byDay.error} />}
      {!byDay.data && byDay.loading && <Loading />}
      {byDay.data && (
        <>
          {busyDays.length === 0 ? (
            <p className="muted" data-testid="no-activity">No money moved in this period.</p>
          ) : (
            <div className="grid-2">
              {CHARTS.map(({ title, figures }) => {
                const shown = columns.filter((c) => figures.includes(c));
                return shown.length ? (
                  <Chart
                    key={title}
                    kind="bar"
                    title={title}
                    series={shown.map((c) => ({
                      name: columnLabel(c),
                      points: busyDays.map((row, i) => ({ x: i, y: Number(row[c] ?? 0), label: rowLabel(row).slice(5) || String(i) })),
                    }))}
                    yFormat={(y) => creditsText(y)}
                    emptyText="Nothing in this period."
                  />
                ) : null;
              })}
            </div>
          )}
          {byDay.data.totals && <ReportTable rows={[{ ...byDay.data.totals, period: "Total" }]} caption="Totals" head="Period" />}
          {busyDays.length > 0 && <ReportTable rows={busyDays} caption="Per day, days with activity" head="Day" />}
          {quietDays > 0 && busyDays.length > 0 && (
            <p className="muted small" data-testid="quiet-days">
              {quietDays} day{quietDays === 1 ? "" : "s"} without activity left out.
            </p>
          )}
        </>
      )}
      {byDay.data && (
        <>
          <section aria-labelledby="tophosts-h">
            <h2 id="tophosts-h">Top hosts</h2>
            {byDay.data.top_hosts?.length ? (
              <ReportTable rows={byDay.data.top_hosts} caption="The hosts with the most gross charges" head="Host" />
            ) : (
              <p className="muted">No host earned anything in this period.</p>
            )}
          </section>
          <section aria-labelledby="toprenters-h">
            <h2 id="toprenters-h">Top renters</h2>
            {byDay.data.top_renters?.length ? (
              <ReportTable rows={byDay.data.top_renters} caption="The renters with the most gross charges" head="Renter" />
            ) : (
              <p className="muted">No renter was charged in this period.</p>
            )}
          </section>
        </>
      )}
    </section>
  );
}
