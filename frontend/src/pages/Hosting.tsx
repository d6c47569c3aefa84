import { useRef, useState, type FormEvent } from "react";
import { Link } from "react-router";
import { api } from "../api/endpoints";
import { ApiError } from "../api/errors";
import type { AvailabilityWindow, EarningsLine, Enrollment, HostPatch, OwnedHost } from "../api/types";
import { pageConfig } from "../config";
import { Chart, type Point } from "../components/Chart";
import { CopyButton } from "../components/CopyButton";
import { ErrorBanner, Notice } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Loading } from "../components/Progress";
import { HostStatusBadge } from "../components/StatusBadge";
import { useFormErrors } from "../lib/forms";
import { useInterval, useLoad } from "../lib/hooks";
import { IsolationWarning } from "../components/IsolationWarning";
import { DAYS, reliabilityText } from "../lib/hosts";
import { creditsText, creditsToMicros, formatCredits, formatDateTime, formatMemory, microsToInput } from "../lib/money";
import { uuid4 } from "../lib/uuid";
import { HostPool } from "../components/pool/HostPool";

function Enroll({ onEnrolled }: { onEnrolled: () => void }) {
  const errors = useFormErrors(["name"]);
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [enrollment, setEnrollment] = useState<Enrollment | null>(null);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    setBusy(true);
    try {
      setEnrollment(await api.enrollmentCreate(name.trim()));
      onEnrolled();
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="enroll-h">
      <h2 id="enroll-h">Add a machine</h2>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <form onSubmit={(e) => void submit(e)} className="inline-form" noValidate>
        <Field label="Machine name (optional)" error={errors.fieldError("name")}>
          <input value={name} onChange={(e) => setName(e.target.value)} placeholder="lab-desktop" />
        </Field>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Creating…" : "Create enrollment command"}
        </button>
      </form>
      {enrollment && (
        <div className="enrollment" data-testid="enrollment">
          <p>
            Run this on the machine (with the agent installed). The token works once and expires{" "}
            {formatDateTime(enrollment.expires_at)}.
          </p>
          <pre className="command" tabIndex={0} aria-label="Enrollment command">
            {enrollment.command}
          </pre>
          <CopyButton text={enrollment.command} label="Copy command" />
          <p className="small muted">Then start it with <code>communipute-agent run</code>. The machine appears below once it connects.</p>
        </div>
      )}
    </section>
  );
}

function WindowsEditor({ windows, onChange }: { windows: AvailabilityWindow[]; onChange: (w: AvailabilityWindow[]) => void }) {
  const update = (i: number, patch: Partial<AvailabilityWindow>) =>
    onChange(windows.map((w, j) => (j === i ? { ...w, ...patch } : w)));
  return (
    <fieldset>
      <legend>Time windows (none = any time)</legend>
      {windows.map((w, i) => (
        <div key={i} className="window-row">
          <div role="group" aria-label={`Window ${i + 1} days`} className="days">
            {DAYS.map((day, d) => (
              <label key={day}>
                <input
                  type="checkbox"
                  checked={w.days.includes(d)}
                  onChange={(e) => update(i, { days: e.target.checked ? [...w.days, d].sort() : w.days.filter((x) => x !== d) })}
                />
                {day}
              </label>
            ))}
          </div>
          <label>
            From <input type="time" value={w.start} onChange={(e) => update(i, { start: e.target.value })} />
          </label>
          <label>
            to <input type="time" value={w.end} onChange={(e) => update(i, { end: e.target.value })} />
          </label>
          <button type="button" className="link-button" onClick={() => onChange(windows.filter((_, j) => j !== i))}>
            Remove window {i + 1}
          </button>
        </div>
      ))}
      <button type="button" onClick={() => onChange([...windows, { days: [0, 1, 2, 3, 4], start: "18:00", end: "08:00" }])}>
        Add a window
      </button>
    </fieldset>
  );
}

const HOST_FIELDS = [
  // The policy's own fields come back top-level (hosts/policy.py names them so).
  "timezone",
  "windows",
  "idle_minutes",
  "max_load",
  "name",
  "cpu_core_hour_micros",
  "memory_gb_hour_micros",
  "gpu_hour_micros",
  "availability_policy",
  "visibility",
  "is_draining",
  "max_job_cpus",
  "max_job_memory_mb",
] as const;

function HostEditor({ host, onSaved }: { host: OwnedHost; onSaved: (h: OwnedHost) => void }) {
  const errors = useFormErrors(HOST_FIELDS);
  const policy = host.availability_policy;
  const [form, setForm] = useState({
    name: host.name,
    cpu: microsToInput(host.cpu_core_hour_micros),
    memory: microsToInput(host.memory_gb_hour_micros),
    gpu: microsToInput(host.gpu_hour_micros),
    timezone: policy.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
    windows: policy.windows ?? [],
    idle: policy.idle_minutes ? String(policy.idle_minutes) : "",
    maxLoad: policy.max_load !== null && policy.max_load !== undefined ? String(policy.max_load) : "",
    draining: host.is_draining ?? host.status === "draining",
  });
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const [local, setLocal] = useState<Record<string, string>>({});
  const set = <K extends keyof typeof form>(key: K, value: (typeof form)[K]) => setForm((f) => ({ ...f, [key]: value }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    setSaved(false);
    const rates = { cpu: creditsToMicros(form.cpu), memory: creditsToMicros(form.memory), gpu: creditsToMicros(form.gpu) };
    const problems: Record<string, string> = {};
    if (rates.cpu === null) problems.cpu_core_hour_micros = "A price in credits, e.g. 0.05.";
    if (rates.memory === null) problems.memory_gb_hour_micros = "A price in credits, e.g. 0.01.";
    if (rates.gpu === null) problems.gpu_hour_micros = "A price in credits, e.g. 0.50.";
    setLocal(problems);
    if (Object.keys(problems).length) return;
    const patch: HostPatch = {
      name: form.name,
      cpu_core_hour_micros: rates.cpu!,
      memory_gb_hour_micros: rates.memory!,
      gpu_hour_micros: rates.gpu!,
      is_draining: form.draining,
      availability_policy: {
        timezone: form.timezone,
        windows: form.windows,
        idle_minutes: form.idle ? Number(form.idle) : null,
        max_load: form.maxLoad ? Number(form.maxLoad) : null,
      },
    };
    setBusy(true);
    try {
      onSaved(await api.myHostUpdate(host.id, patch));
      setSaved(true);
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };
  const err = (field: string) => errors.fieldError(field) ?? local[field];

  return (
    <form onSubmit={(e) => void submit(e)} className="host-editor" noValidate aria-label={`Settings of ${host.name}`}>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      {saved && <Notice>Saved. New rates apply to jobs placed from now on.</Notice>}
      <Field label="Name" error={err("name")}>
        <input value={form.name} onChange={(e) => set("name", e.target.value)} />
      </Field>
      <fieldset>
        <legend>Rates (credits per hour)</legend>
        <div className="row">
          <Field label="Per CPU core-hour used" error={err("cpu_core_hour_micros")}>
            <input inputMode="decimal" value={form.cpu} onChange={(e) => set("cpu", e.target.value)} />
          </Field>
          <Field label="Per GB-hour of memory" error={err("memory_gb_hour_micros")}>
            <input inputMode="decimal" value={form.memory} onChange={(e) => set("memory", e.target.value)} />
          </Field>
          <Field label="Per GPU-hour" error={err("gpu_hour_micros")}>
            <input inputMode="decimal" value={form.gpu} onChange={(e) => set("gpu", e.target.value)} />
          </Field>
        </div>
      </fieldset>
      <fieldset>
        <legend>Availability policy</legend>
        <Field label="Time zone" error={err("timezone") ?? err("availability_policy.timezone")}>
          <input value={form.timezone} onChange={(e) => set("timezone", e.target.value)} />
        </Field>
        <WindowsEditor windows={form.windows} onChange={(w) => set("windows", w)} />
        {(err("windows") ?? err("availability_policy")) && (
          <p className="field-error" role="alert">
            {err("windows") ?? err("availability_policy")}
          </p>
        )}
        <div className="row">
          <Field label="Only after this many idle minutes (keyboard/mouse)" error={err("idle_minutes") ?? err("availability_policy.idle_minutes")}>
            <input type="number" min={0} value={form.idle} onChange={(e) => set("idle", e.target.value)} />
          </Field>
          <Field label="Only while other processes use less CPU than (%)" error={err("max_load") ?? err("availability_policy.max_load")} hint="0–100; empty = no limit.">
            <input type="number" min={0} max={100} step={1} value={form.maxLoad} onChange={(e) => set("maxLoad", e.target.value)} />
          </Field>
        </div>
      </fieldset>
      <div className="field checkbox">
        <label>
          <input type="checkbox" checked={form.draining} onChange={(e) => set("draining", e.target.checked)} /> Drain: finish running jobs, take no new ones
        </label>
        {err("is_draining") && <small className="field-error">{err("is_draining")}</small>}
      </div>
      <button type="submit" className="primary" disabled={busy}>
        {busy ? "Saving…" : "Save"}
      </button>
    </form>
  );
}

function MyHosts({ reloadKey }: { reloadKey: number }) {
  const hosts = useLoad(() => api.myHosts(), [reloadKey]);
  const orgs = useLoad(() => api.organisations().catch(() => ({ count: 0, results: [] })), []);
  const orgNames = new Map((orgs.data?.results ?? []).map((o) => [o.id, o.name] as [number, string]));
  const [open, setOpen] = useState<number | null>(null);
  useInterval(hosts.reload, 10000);
  return (
    <section aria-labelledby="myhosts-h">
      <h2 id="myhosts-h">Your machines</h2>
      {hosts.error !== null && <ErrorBanner error={hosts.error} />}
      {!hosts.data && hosts.loading && <Loading />}
      {hosts.data && hosts.data.results.length === 0 && <p>No machines yet. Create an enrollment command above.</p>}
      {hosts.data && hosts.data.results.length > 0 && (
        <ul className="host-list" aria-live="polite">
          {hosts.data.results.map((h) => (
            <li key={h.id} data-testid={`my-host-${h.id}`}>
              <div className="host-line">
                <strong>{h.name || `Host #${h.id}`}</strong> <HostStatusBadge status={h.status} />
                {h.is_available === false && <span className="badge badge-idle">unavailable{h.unavailable_reason ? `: ${h.unavailable_reason}` : " (your policy)"}</span>}
                <IsolationWarning isolation={h.isolation} compact />
                <span className="muted small">
                  {h.cpus} cores · {formatMemory(h.memory_mb)} · {formatCredits(h.cpu_core_hour_micros)}/core-h · {reliabilityText(h)} · last seen{" "}
                  {formatDateTime(h.last_seen_at)}
                </span>
                <Link to={`/hosts/${h.id}`}>Listing</Link>
                <button type="button" aria-expanded={open === h.id} onClick={() => setOpen(open === h.id ? null : h.id)}>
                  {open === h.id ? "Close settings" : "Edit rates and policy"}
                </button>
              </div>
              {h.is_ready === false && (
                <p className="field-error" data-testid={`not-ready-${h.id}`}>
                  Not ready to run jobs: {h.not_ready_reason || "the agent's self-check failed"}
                </p>
              )}
              {h.fault_quarantined_at && (
                <p className="field-error">
                  Gets no jobs: {h.host_faults} jobs failed here for reasons of the machine's own. Fix it and restart the agent; it takes jobs again once the restarted agent reports ready.
                </p>
              )}
              {h.last_fault_detail && (
                <details className="small">
                  <summary>Last host fault ({formatDateTime(h.last_fault_at)})</summary>
                  <pre className="wrap">{h.last_fault_detail}</pre>
                </details>
              )}
              {h.isolation === "none" && (
                <p className="small">
                  <IsolationWarning isolation={h.isolation} /> Install Docker and build the runner image (<code>make runner-image</code>) so it can take other people's jobs.
                </p>
              )}
              <HostPool host={h} orgNames={orgNames} onChanged={() => hosts.reload()} />
              {open === h.id && <HostEditor host={h} onSaved={() => hosts.reload()} />}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** Cumulative earnings per day (net of fees and reversals), by each job's last charge. */
export function earningsSeries(lines: EarningsLine[]): Point[] {
  const byDay = new Map<string, number>();
  for (const line of lines) {
    const day = line.last_charged_at.slice(0, 10);
    const amount = line.earned_micros;
    byDay.set(day, (byDay.get(day) ?? 0) + amount);
  }
  let total = 0;
  const points = [...byDay.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([day, amount]) => {
      total += amount;
      return { x: Date.parse(`${day}T00:00:00Z`), y: total, label: day };
    });
  if (points.length) {
    // Start from nothing the day before the first earning, so one day still draws a line.
    const before = new Date(points[0]!.x - 86_400_000).toISOString().slice(0, 10);
    points.unshift({ x: points[0]!.x - 86_400_000, y: 0, label: before });
  }
  return points;
}

/** Payouts go to a Stripe Express account; onboarding happens on Stripe's own pages. */
function PayoutAccount() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState<string | null>(null);
  const connect = async () => {
    setBusy(true);
    setError(null);
    try {
      const onboarding = await api.payoutOnboarding();
      setStatus(onboarding.onboarding_status);
      if (onboarding.url) window.location.assign(onboarding.url);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="inline-form">
      <button type="button" onClick={() => void connect()} disabled={busy}>
        {busy ? "Opening…" : "Connect or update your payout account (Stripe)"}
      </button>
      {status && (
        <span role="status">
          {status === "complete"
            ? pageConfig().payment_provider === "demo"
              ? "Payout account ready: the demo pays out without Stripe, so payouts complete at once."
              : "Payout account ready: payouts go to your Stripe account."
            : "Payout account not finished yet: complete the Stripe steps to receive payouts."}
        </span>
      )}
      <ErrorBanner error={error} />
    </div>
  );
}

function EarningsAndPayouts({ reloadKey }: { reloadKey: number }) {
  const config = pageConfig();
  const [tick, setTick] = useState(0);
  const earnings = useLoad(() => api.earnings(), [reloadKey, tick]);
  const payouts = useLoad(() => api.payouts(), [reloadKey, tick]);
  const errors = useFormErrors(["amount_micros"]);
  const [amount, setAmount] = useState("");
  const [busy, setBusy] = useState(false);
  const [localError, setLocalError] = useState<string>();
  const pendingKey = useRef<{ key: string; amount: number } | null>(null);
  useInterval(() => setTick((t) => t + 1), 15000);

  const requestPayout = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    const micros = creditsToMicros(amount);
    if (!micros) {
      setLocalError("Enter an amount in credits.");
      return;
    }
    setLocalError(undefined);
    if (!pendingKey.current || pendingKey.current.amount !== micros) pendingKey.current = { key: uuid4(), amount: micros };
    setBusy(true);
    try {
      await api.payoutCreate(micros, pendingKey.current.key);
      pendingKey.current = null;
      setAmount("");
      setTick((t) => t + 1);
    } catch (err) {
      if (err instanceof ApiError && err.status > 0 && err.status < 500) pendingKey.current = null;
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  const lines = earnings.data?.results ?? [];
  return (
    <section aria-labelledby="earn-h">
      <h2 id="earn-h">Earnings</h2>
      {earnings.error !== null && <ErrorBanner error={earnings.error} />}
      {earnings.data && (
        <>
          <dl className="balances" aria-live="polite">
            <div>
              <dt>Pending (dispute window)</dt>
              <dd data-testid="earnings-pending">{formatCredits(earnings.data.pending_micros)}</dd>
            </div>
            <div>
              <dt>Available to pay out</dt>
              <dd data-testid="earnings-available">{formatCredits(earnings.data.available_micros)}</dd>
            </div>
            <div>
              <dt>Being paid out</dt>
              <dd data-testid="earnings-in-payout">{formatCredits(earnings.data.in_payout_micros)}</dd>
            </div>
            <div>
              <dt>Paid out</dt>
              <dd data-testid="earnings-paid">{formatCredits(earnings.data.paid_micros)}</dd>
            </div>
          </dl>
          <Chart title="Earnings over time (cumulative, net of fees)" series={[{ name: "Earned", points: earningsSeries(lines) }]} yFormat={(y) => creditsText(y)} showTable emptyText="No earnings yet." />
        </>
      )}
      <h3>Payouts</h3>
      <PayoutAccount />
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <form onSubmit={(e) => void requestPayout(e)} className="inline-form" noValidate>
        <Field
          label="Amount (credits)"
          error={errors.fieldError("amount_micros") ?? localError}
          hint={config.payout_min_micros ? `At least ${formatCredits(config.payout_min_micros)}; paid to your connected Stripe account.` : "Paid to your connected Stripe account."}
        >
          <input inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />
        </Field>
        <button type="submit" disabled={busy}>{busy ? "Requesting…" : "Request payout"}</button>
      </form>
      {payouts.error !== null && <ErrorBanner error={payouts.error} />}
      {payouts.data && payouts.data.results.length > 0 && (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Payout history</caption>
            <thead>
              <tr>
                <th scope="col">Requested</th>
                <th scope="col" className="num">Amount</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {payouts.data.results.map((p) => (
                <tr key={p.id}>
                  <td>{formatDateTime(p.created_at)}</td>
                  <td className="num">{formatCredits(p.amount_micros)}</td>
                  <td>
                    {p.status}
                    {p.failure_reason && <div className="small muted">{p.failure_reason}</div>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {payouts.data && payouts.data.results.length === 0 && <p className="muted">No payouts yet.</p>}
    </section>
  );
}

export function HostingPage() {
  const [reloadKey, setReloadKey] = useState(0);
  return (
    <section>
      <h1>Hosting</h1>
      <p>Rent out your idle machine: enroll it with the agent, set your rates and when it may work, and get paid.</p>
      <Enroll onEnrolled={() => setReloadKey((k) => k + 1)} />
      <MyHosts reloadKey={reloadKey} />
      <EarningsAndPayouts reloadKey={reloadKey} />
    </section>
  );
}
