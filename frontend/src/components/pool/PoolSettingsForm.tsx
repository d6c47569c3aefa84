import { useEffect, useState, type FormEvent } from "react";
import { ApiError } from "../../api/errors";
import { pools, type PoolLogs, type PoolSettings } from "../../api/pools";
import { useFormErrors } from "../../lib/forms";
import { useLoad } from "../../lib/hooks";
import { listLines, poolFormFrom, poolFormProblems, poolPatchFrom, type PoolForm } from "../../lib/poolSettings";
import { ErrorBanner, Notice } from "../ErrorBanner";
import { Field } from "../Field";
import { Loading } from "../Progress";

const LIST_FIELDS = ["pool_fetch_networks", "pool_fetch_hosts", "pool_job_networks"] as const;
const STORE_FIELDS = ["endpoint_url", "bucket", "prefix", "region"] as const;

export const POOL_FIELDS = [
  "pool_required",
  "pool_hidden",
  ...LIST_FIELDS,
  "pool_members_free",
  ...STORE_FIELDS.map((f) => `pool_output_store.${f}`),
  "pool_output_store",
  "pool_logs",
  "pool_airlock",
];

const LOGS: { value: PoolLogs; label: string }[] = [
  { value: "central", label: "Sent to the server" },
  { value: "store", label: "Kept on the pool's store" },
  { value: "redacted", label: "Not kept anywhere" },
];

const FORM_KEY: Record<(typeof LIST_FIELDS)[number], keyof PoolForm> = {
  pool_fetch_networks: "fetchNetworks",
  pool_fetch_hosts: "fetchHosts",
  pool_job_networks: "jobNetworks",
};

export function PoolSettingsSection({ orgId, isAdmin }: { orgId: number; isAdmin: boolean }) {
  const loaded = useLoad(() => pools.settings(orgId), [orgId]);
  const [saved, setSaved] = useState<PoolSettings | null>(null);
  const [form, setForm] = useState<PoolForm | null>(null);
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [sentLists, setSentLists] = useState<Record<string, string[]>>({});
  const errors = useFormErrors(POOL_FIELDS);

  useEffect(() => {
    if (loaded.data) {
      setSaved(loaded.data);
      setForm(poolFormFrom(loaded.data));
    }
  }, [loaded.data]);

  if (loaded.error !== null) return <ErrorBanner error={loaded.error} />;
  if (!form || !saved) return <Loading />;

  const problems = poolFormProblems(form);
  const set = <K extends keyof PoolForm>(key: K, value: PoolForm[K]) => setForm((f) => (f ? { ...f, [key]: value } : f));

  /** The server's error for a field, a list's entries named by what was sent; else the local check. */
  const errorFor = (field: string): string | undefined => {
    if (errors.error instanceof ApiError && (LIST_FIELDS as readonly string[]).includes(field)) {
      const mine = Object.entries(errors.error.fields).filter(([key]) => key === field || key.startsWith(`${field}.`) || key.startsWith(`${field}[`));
      if (mine.length)
        return mine
          .map(([key, message]) => {
            const index = /[.[](\d+)\]?$/.exec(key)?.[1];
            const entry = index !== undefined ? sentLists[field]?.[Number(index)] : undefined;
            return entry !== undefined ? `“${entry}”: ${message}` : message;
          })
          .join(" ");
    }
    return errors.fieldError(field) ?? (tried ? problems[field] : undefined);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setTried(true);
    setNotice(null);
    errors.clear();
    if (Object.keys(problems).length) return;
    const patch = poolPatchFrom(form, saved);
    if (!Object.keys(patch).length) {
      setNotice("Nothing changed.");
      return;
    }
    setSentLists(Object.fromEntries(LIST_FIELDS.map((f) => [f, listLines(form[FORM_KEY[f]] as string)])));
    setBusy(true);
    try {
      const next = await pools.settingsUpdate(orgId, patch);
      setSaved(next);
      setForm(poolFormFrom(next));
      setTried(false);
      setNotice("The pool's settings are saved. They apply to jobs offered from now on.");
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  const localList = tried ? Object.entries(problems) : [];

  return (
    <section aria-labelledby="pool-h">
      <h2 id="pool-h">Pool settings</h2>
      {!isAdmin && <p className="small">Only the organisation&apos;s admins change these; members see them.</p>}
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      {localList.length > 0 && (
        <div className="banner banner-error" role="alert">
          <p>Fix {localList.length === 1 ? "this" : `these ${localList.length}`} before saving (marked below).</p>
        </div>
      )}
      {notice && <Notice>{notice}</Notice>}
      <form onSubmit={(e) => void submit(e)} noValidate className="pool-form">
        <fieldset disabled={!isAdmin || busy}>
          <legend>Who runs where</legend>
          <Check label="Members' jobs must run in the pool (a member's job that names no pool is refused)" checked={form.required} onChange={(v) => set("required", v)} error={errorFor("pool_required")} />
          <Check label="Keep the pool's machines out of the public catalog: they take only the pool's jobs" checked={form.hidden} onChange={(v) => set("hidden", v)} error={errorFor("pool_hidden")} />
          <Check label="Members run free on the pool's machines (usage is still metered for the reports)" checked={form.membersFree} onChange={(v) => set("membersFree", v)} error={errorFor("pool_members_free")} />
        </fieldset>
        <fieldset disabled={!isAdmin || busy}>
          <legend>Inputs stay inside</legend>
          <Field label="Networks inputs may be fetched from (one CIDR a line)" error={errorFor("pool_fetch_networks")} hint="Such as 10.20.0.0/16. The pool's machines fetch these inside the institution; the server never does.">
            <textarea className="mono" rows={3} spellCheck={false} value={form.fetchNetworks} onChange={(e) => set("fetchNetworks", e.target.value)} />
          </Field>
          <Field label="Host names inputs may be fetched from (one a line)" error={errorFor("pool_fetch_hosts")} hint="Such as data.example.org, or *.example.org for every name under it.">
            <textarea className="mono" rows={3} spellCheck={false} value={form.fetchHosts} onChange={(e) => set("fetchHosts", e.target.value)} />
          </Field>
          <Field label="Networks jobs may reach while they run (one CIDR a line)" error={errorFor("pool_job_networks")} hint="Internal addresses only, never the internet; empty: jobs have no network.">
            <textarea className="mono" rows={3} spellCheck={false} value={form.jobNetworks} onChange={(e) => set("jobNetworks", e.target.value)} />
          </Field>
        </fieldset>
        <fieldset disabled={!isAdmin || busy}>
          <legend>Outputs leave only when released</legend>
          <p className="small">
            An S3-compatible store on the institution&apos;s side for the pool jobs&apos; outputs. Its keys are set on each machine, never here.
            Leave every field empty to keep outputs on the central store.
          </p>
          {errors.fieldError("pool_output_store") && (
            <p className="field-error" role="alert">
              {errors.fieldError("pool_output_store")}
            </p>
          )}
          <Field label="Endpoint URL" error={errorFor("pool_output_store.endpoint_url")}>
            <input className="mono" inputMode="url" value={form.storeEndpoint} onChange={(e) => set("storeEndpoint", e.target.value)} placeholder="https://s3.example.org" />
          </Field>
          <Field label="Bucket" error={errorFor("pool_output_store.bucket")}>
            <input className="mono" value={form.storeBucket} onChange={(e) => set("storeBucket", e.target.value)} />
          </Field>
          <Field label="Prefix" error={errorFor("pool_output_store.prefix")} hint="Optional: keys start with it, such as communipute/.">
            <input className="mono" value={form.storePrefix} onChange={(e) => set("storePrefix", e.target.value)} />
          </Field>
          <Field label="Region" error={errorFor("pool_output_store.region")} hint="Optional.">
            <input className="mono" value={form.storeRegion} onChange={(e) => set("storeRegion", e.target.value)} />
          </Field>
          <Field
            label="Job logs"
            error={errorFor("pool_logs")}
            hint="Sent to the server: the person who ran the job reads it live. Kept on the pool's store or not kept: the server gets only its size."
          >
            <select value={form.logs} onChange={(e) => set("logs", e.target.value as PoolLogs)}>
              {LOGS.map((l) => (
                <option key={l.value} value={l.value}>
                  {l.label}
                </option>
              ))}
            </select>
          </Field>
          <Check
            label="Airlock: an output reaches the person who ran the job only after a data steward approves its release"
            checked={form.airlock}
            onChange={(v) => set("airlock", v)}
            error={errorFor("pool_airlock")}
          />
        </fieldset>
        {isAdmin && (
          <button type="submit" className="primary" disabled={busy}>
            {busy ? "Saving…" : "Save pool settings"}
          </button>
        )}
      </form>
    </section>
  );
}

function Check({ label, checked, onChange, error }: { label: string; checked: boolean; onChange: (v: boolean) => void; error?: string }) {
  return (
    <div className={`field checkbox${error ? " field-invalid" : ""}`}>
      <label>
        <input type="checkbox" checked={checked} onChange={(e) => onChange(e.target.checked)} aria-invalid={error ? true : undefined} /> {label}
      </label>
      {error && (
        <small className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}
