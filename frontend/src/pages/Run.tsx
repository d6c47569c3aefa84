import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import { ApiError } from "../api/errors";
import type { Host, Quote, QuoteSpec } from "../api/types";
import { CodeEditor } from "../components/CodeEditor";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Busy } from "../components/Progress";
import { fieldLabel } from "../api/errorText";
import { IsolationWarning } from "../components/IsolationWarning";
import { InputsPanel, UploadRow, useUploads } from "../components/InputsPanel";
import { inputsSummary, type InputsSummary } from "../lib/inputUploads";
import { hostMisfits, whyNoneFits } from "../lib/fit";
import { filesRead, formatBytes, type UploadedFile } from "../lib/files";
import { useFormErrors } from "../lib/forms";
import { useDebounced, useLoad } from "../lib/hooks";
import { DEFAULT_FORM, localProblems, quoteSpecFrom, specFrom, type RunForm } from "../lib/jobSpec";
import { creditsToMicros, formatCredits, formatDuration } from "../lib/money";
import { quoteView, type QuoteView } from "../lib/quote";
import { uuid4 } from "../lib/uuid";
import {
  DEFAULT_GROUP_FORM,
  GROUP_SERVER_NAME,
  groupProblems,
  groupSpecFrom,
  taskArgumentsRead,
  taskCount,
  taskFieldLead,
  type GroupForm,
  type RunMode,
} from "../lib/groupSpec";
import { GroupFields } from "../components/GroupFields";
import { pools } from "../api/pools";
import { initialPool, usePoolChoices, type PoolChoices } from "../lib/poolChoice";

export const RUN_FIELDS = [
  "name",
  "code",
  "files",
  "archive_sha256",
  "entrypoint",
  "requirements",
  "cpus",
  "memory_mb",
  "gpus",
  "timeout_seconds",
  "max_cost_micros",
  "host",
  "placement",
  "pool",
  "inputs",
  "disk",
  "work_exec",
  // a group's (docs/jobs.md "Job groups"): the job's inputs and cap under their group names
  "shared_inputs",
  "task_max_cost_micros",
  "count",
  "max_parallel",
  "host_fault_retries",
  "error_retries",
] as const;

/** A problem's field in words; in group mode the job's cap is each task's. */
function runFieldLabel(field: string, mode: RunMode): string {
  if (field === "group_cap") return "Group cost cap";
  if (field === "task_arguments") return "Task arguments";
  if (field === "pool") return "Run in";
  if (mode === "group" && field === "max_cost_micros") return "Cost cap per task";
  return fieldLabel(field);
}

export const QUOTE_DEBOUNCE_MS = 500;

/** Seconds of full use the cap pays for, when that is shorter than the timeout. */
function capStopsEarly(view: QuoteView, capMicros: number | null): number | null {
  if (!capMicros || !view.hourlyMicros || view.estimateMicros === null || capMicros >= view.estimateMicros) return null;
  return (capMicros / view.hourlyMicros) * 3600;
}

/**
 * The live quote: POST /quotes/ after the spec stops changing; stale answers are dropped. It
 * asks again when the disk limits or the inputs' total size change (hosts without that much
 * disk per job are left out).
 */
function useQuote(form: RunForm, inputFileBytes: number, enabled: boolean) {
  const spec = useMemo(() => (enabled ? JSON.stringify(quoteSpecFrom(form, inputFileBytes)) : null), [form, inputFileBytes, enabled]);
  // Debounce the spec together with whether it is complete, so an edit that passes through an
  // incomplete state (a cleared field) never sends the old spec again.
  const debounced = useDebounced(spec, QUOTE_DEBOUNCE_MS);
  const [quote, setQuote] = useState<Quote | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);

  useEffect(() => {
    if (debounced === null) return;
    const controller = new AbortController();
    setLoading(true);
    api.quote(JSON.parse(debounced) as QuoteSpec, controller.signal).then(
      (q) => {
        setQuote(q);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (controller.signal.aborted) return;
        setQuote(null);
        setError(err);
        setLoading(false);
      },
    );
    return () => controller.abort();
  }, [debounced]);

  return { quote, error, loading: loading || (spec !== null && spec !== debounced) };
}

/** What the group's cap means, with the most it holds at once at these caps. */
function groupCapHint(group: GroupForm, taskCapMicros: number | null): string {
  const parallel = Number(group.maxParallel);
  const most = taskCapMicros && Number.isInteger(parallel) && parallel > 0 ? ` At most ${parallel} × the task cap (${formatCredits(parallel * taskCapMicros)}) is held at once.` : "";
  return `What all the tasks together may cost: no task starts once it could pass this.${most}`;
}

/** Why the job can't run outside a pool: the organisations that require theirs. */
function poolRequiredProblem(choices: PoolChoices, pool: string): string | null {
  if (pool || !choices.requiring.length) return null;
  const names = choices.requiring.map((c) => c.name).join(" and ");
  return `${names} ${choices.requiring.length === 1 ? "requires" : "require"} its members' jobs to run in ${choices.requiring.length === 1 ? "its pool" : "their pools"}: choose one under “Run in”.`;
}

/** Why the Run button waits, or null: the zip as the code and the input files go first. */
function uploadsWaitText(zip: InputsSummary, inputs: InputsSummary): string | null {
  const failed = [
    zip.failed ? "The zip failed to upload: retry or remove it to run." : "",
    inputs.failed
      ? `${inputs.failed} input${inputs.failed === 1 ? "" : "s"} failed to upload: retry or remove ${inputs.failed === 1 ? "it" : "them"} to run.`
      : "",
  ].filter(Boolean);
  if (failed.length) return failed.join(" ");
  const waiting = [zip.pending ? "the zip" : "", inputs.pending ? `${inputs.pending} input${inputs.pending === 1 ? "" : "s"}` : ""].filter(Boolean);
  return waiting.length ? `Waiting for ${waiting.join(" and ")} to finish uploading.` : null;
}

export function RunPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const presetHost = params.get("host") ?? "";
  const [form, setForm] = useState<RunForm>({
    ...DEFAULT_FORM,
    placement: presetHost ? "host" : "auto",
    host: presetHost,
  });
  const [mode, setMode] = useState<RunMode>(params.get("mode") === "group" ? "group" : "job");
  const [group, setGroup] = useState<GroupForm>(DEFAULT_GROUP_FORM);
  const argumentsRead = useMemo(() => taskArgumentsRead(group.argumentsText), [group.argumentsText]);
  const tasks = taskCount(group, argumentsRead);
  const [tried, setTried] = useState(false);
  const [submitting, setSubmitting] = useState(false);
  const submitErrors = useFormErrors(RUN_FIELDS);
  const poolChoices = usePoolChoices();
  const poolPreset = params.get("pool");
  useEffect(() => {
    if (poolChoices.loading) return;
    setForm((f) => ({ ...f, pool: initialPool(poolChoices, poolPreset, f.pool) }));
  }, [poolChoices, poolPreset]);
  // The machines to choose from: the pool's when the job runs in one, else the public catalog.
  const hosts = useLoad(
    () => (form.pool ? pools.hosts(Number(form.pool), undefined, { online: true, ordering: "price" }) : api.hosts({ online: true, ordering: "price" })),
    [form.pool],
  );
  const preset = useLoad<Host | null>(() => (presetHost ? api.host(Number(presetHost)) : Promise.resolve(null)), [presetHost]);

  const { uploads, items } = useUploads();
  const uploadSummary = inputsSummary(items);
  // The zip as the code goes through the blob store like an input, then is named by its sha256.
  const { uploads: zipUploads, items: zipItems } = useUploads();
  const uploadsWait = uploadsWaitText(inputsSummary(zipItems), uploadSummary);
  // The member's month in the chosen pool, beside the choice (a server without it: nothing shown).
  const month = useLoad(() => (form.pool ? pools.walletMe(Number(form.pool)).catch(() => null) : Promise.resolve(null)), [form.pool]);
  const poolProblem = poolRequiredProblem(poolChoices, form.pool);
  const jobProblems: Record<string, string> = { ...localProblems(form, items.map((item) => item.path)), ...(poolProblem ? { pool: poolProblem } : {}) };
  const problems = mode === "group" ? { ...jobProblems, ...groupProblems(group, argumentsRead, creditsToMicros(form.capCredits)) } : jobProblems;
  // The inputs' and the disk limits' problems block the submit only: the quote goes on without
  // them (quoteSpecFrom leaves out disk limits that are not numbers); so do the group's own.
  const canQuote = Object.keys(jobProblems).every((field) => field === "inputs" || field === "disk" || field === "pool");
  const live = useQuote(form, uploadSummary.bytes, canQuote);
  const quoteErrors = live.error instanceof ApiError ? live.error.fields : {};
  const view = live.quote ? quoteView(live.quote) : null;

  // One Idempotency-Key per submission attempt; reused only when the last attempt's outcome is
  // unknown (network error or 5xx) and the spec is unchanged, so a retry cannot create twice.
  const pendingKey = useRef<{ key: string; spec: string } | null>(null);

  const set = <K extends keyof RunForm>(key: K, value: RunForm[K]) => setForm((f) => ({ ...f, [key]: value }));
  /** The error shown at a field of the form: the server's (under its group name in group mode),
   * the quote's, or the form's own check. A task's refusal says which task. */
  const submitErrorFor = (field: string): string | undefined => {
    const name = mode === "group" ? (GROUP_SERVER_NAME[field] ?? field) : field;
    if (field !== "task_arguments" || !(submitErrors.error instanceof ApiError)) return submitErrors.fieldError(name);
    const mine = Object.entries(submitErrors.error.fields).filter(([key]) => key === "inputs" || key.startsWith("inputs["));
    return mine.length ? mine.map(([key, message]) => `${taskFieldLead(key)}${message}`).join(" ") : undefined;
  };
  const errorFor = (field: string): string | undefined =>
    submitErrorFor(field) ??
    Object.entries(quoteErrors).find(([k]) => k === field || k.startsWith(`${field}.`))?.[1] ??
    (tried ? problems[field] : undefined);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setTried(true);
    submitErrors.clear();
    if (Object.keys(problems).length) {
      // Every problem at once, and focus on the summary so a keyboard or screen reader user hears it.
      requestAnimationFrame(() => document.getElementById("run-problems")?.focus());
      return;
    }
    if (uploadsWait) return;
    const zip = form.files.find((f) => f.isZip);
    const zipSha256 = zip ? (zipUploads.inputs().find((held) => held.path === zip.path)?.sha256 ?? null) : null;
    const spec = specFrom(form, uploads.inputs(), zipSha256);
    const groupSpec = mode === "group" ? groupSpecFrom(spec, group, argumentsRead) : null;
    const specText = JSON.stringify(groupSpec ? { group: groupSpec } : spec);
    if (!pendingKey.current || pendingKey.current.spec !== specText) pendingKey.current = { key: uuid4(), spec: specText };
    setSubmitting(true);
    try {
      const key = pendingKey.current.key;
      const path = groupSpec ? `/groups/${(await api.groupCreate(groupSpec, key)).id}` : `/jobs/${(await api.jobSubmit(spec, key)).id}`;
      pendingKey.current = null;
      navigate(path);
    } catch (err) {
      const outcomeUnknown = !(err instanceof ApiError) || err.status === 0 || err.status >= 500;
      if (!outcomeUnknown) pendingKey.current = null;
      submitErrors.set(err);
    } finally {
      setSubmitting(false);
    }
  };

  const onFiles = async (list: FileList | null) => {
    if (!list?.length) return;
    const read = await filesRead(list);
    zipUploads.add(read.filter((f) => f.isZip).map((f) => ({ path: f.path, file: f.file })));
    setForm((f) => ({ ...f, files: [...f.files.filter((x) => !read.some((r) => r.path === x.path)), ...read] }));
  };

  const removeFile = (file: UploadedFile) => {
    const upload = file.isZip ? zipItems.find((item) => item.path === file.path) : undefined;
    if (upload) zipUploads.remove(upload.id);
    setForm((f) => ({ ...f, files: f.files.filter((x) => x.path !== file.path) }));
  };

  const hostOptions = [...(hosts.data?.results ?? [])];
  if (preset.data && !hostOptions.some((h) => h.id === preset.data!.id)) hostOptions.unshift(preset.data);
  const fits = new Set(view?.hosts.map((h) => h.id));
  const hasZip = form.files.some((f) => f.isZip);
  const entry = form.entrypoint.trim() || "main.py";
  const uploadedEntry = form.files.some((f) => !f.isZip && f.path === entry);
  /** Which code runs: the editor's, a file of the entrypoint's name, or the zip's. */
  const codeSource = hasZip
    ? `A zip is uploaded: ${entry} from inside the zip runs, with the zip's other files. The editor's code is not sent.`
    : uploadedEntry
      ? `${entry} from your uploaded files runs. The editor's code is not sent.`
      : form.files.length
        ? `The editor's code runs as ${entry}, next to your ${form.files.length} uploaded file${form.files.length === 1 ? "" : "s"}.`
        : null;
  const editorUnused = hasZip || uploadedEntry;
  const fitSpec = quoteSpecFrom(form, uploadSummary.bytes);
  const noneFitWhy = view && view.hosts.length === 0 && hosts.data ? whyNoneFits(hosts.data.results, fitSpec) : [];
  const problemList = tried ? Object.entries(problems) : [];

  return (
    <section>
      <h1>{mode === "group" ? "Run over inputs" : "Run a job"}</h1>
      {submitErrors.banner && (
        <ErrorBanner message={submitErrors.banner} details={submitErrors.otherFields} />
      )}
      {submitErrors.error instanceof ApiError && submitErrors.error.status === 402 && (
        <p>
          {form.pool ? (
            <>
              The job is paid from the organisation&apos;s wallet: see <Link to={`/organisations/${form.pool}?tab=wallet`}>its wallet and your month</Link>, or
              lower the cost cap.
            </>
          ) : (
            <>
              <Link to="/wallet">Buy credits</Link> or lower the cost cap.
            </>
          )}
        </p>
      )}
      {problemList.length > 0 && (
        <div id="run-problems" className="banner banner-error" role="alert" tabIndex={-1}>
          <p>
            Fix {problemList.length === 1 ? "this" : `these ${problemList.length}`} before running:
          </p>
          <ul>
            {problemList.map(([field, message]) => (
              <li key={field}>
                {runFieldLabel(field, mode)}: {message}
              </li>
            ))}
          </ul>
        </div>
      )}
      <form className="run-form" onSubmit={(e) => void submit(e)} noValidate aria-describedby="quote-box">
        <fieldset className="run-mode">
          <legend>What to run</legend>
          <label>
            <input type="radio" name="mode" checked={mode === "job"} onChange={() => setMode("job")} /> One job
          </label>
          <label>
            <input type="radio" name="mode" checked={mode === "group"} onChange={() => setMode("group")} /> Run over inputs: the same code as many
            tasks, one per argument (or a number of them), each an ordinary job on whichever machine fits
          </label>
        </fieldset>
        <div className="run-code">
          {mode === "group" && <GroupFields group={group} onChange={setGroup} read={argumentsRead} errorFor={errorFor} />}
          <div className={`field${errorFor("code") ? " field-invalid" : ""}`}>
            <label id="code-label">
              Code ({entry}){editorUnused && " — not sent"}
            </label>
            {codeSource && (
              <p className={editorUnused ? "banner banner-info" : "hint"} role="status" data-testid="code-source">
                {codeSource}
              </p>
            )}
            <CodeEditor value={form.code} onChange={(v) => set("code", v)} label="Python code" describedBy={errorFor("code") ? "code-error" : undefined} />
            {errorFor("code") && (
              <small id="code-error" className="field-error" role="alert">
                {errorFor("code")}
              </small>
            )}
          </div>
          <Field label="Requirements (one pip specifier per line)" error={errorFor("requirements")} hint="e.g. numpy==2.1.0 — no URLs, paths or pip options.">
            <textarea className="mono" rows={4} spellCheck={false} value={form.requirements} onChange={(e) => set("requirements", e.target.value)} placeholder="numpy==2.1.0" />
          </Field>
          <Field
            label="Files (several files or a zip)"
            error={errorFor("files") ?? errorFor("archive_sha256")}
            hint={
              hasZip
                ? "The entrypoint must be inside the zip. The zip is uploaded to your stored files first; one you already store is not sent again."
                : "The editor's code is sent as the entrypoint unless you upload a file of that name. Data goes in Inputs, below: no small size limit there."
            }
          >
            <input type="file" multiple onChange={(e) => void onFiles(e.target.files)} />
          </Field>
          {form.files.length > 0 && (
            <ul className="file-list" aria-label="Files to send">
              {form.files.map((f) => {
                const upload = f.isZip ? zipItems.find((item) => item.path === f.path) : undefined;
                if (upload) return <UploadRow key={f.path} item={upload} uploads={zipUploads} onRemove={() => removeFile(f)} testId="zip-row" />;
                return (
                  <li key={f.path}>
                    <code>{f.path}</code> <span className="muted">{formatBytes(f.size)}</span>{" "}
                    <button type="button" className="link-button" onClick={() => removeFile(f)} aria-label={`Remove ${f.path}`}>
                      Remove
                    </button>
                  </li>
                );
              })}
            </ul>
          )}
          <InputsPanel
            uploads={uploads}
            items={items}
            urlRows={form.inputUrls}
            onUrlRows={(rows) => set("inputUrls", rows)}
            error={errorFor("inputs")}
            legend={mode === "group" ? "Inputs every task reads (read-only in /inputs)" : undefined}
          />
        </div>

        <div className="run-side">
          <fieldset>
            <legend>Resources</legend>
            <Field label="Job name (optional)" error={errorFor("name")} hint="Shown in your jobs, the receipt and the wallet; the file to run's name if left empty.">
              <input maxLength={200} value={form.name} placeholder={form.entrypoint.split("/").pop() || "main.py"} onChange={(e) => set("name", e.target.value)} />
            </Field>
            <Field label="Entrypoint (the file to run)" error={errorFor("entrypoint")}>
              <input className="mono" value={form.entrypoint} onChange={(e) => set("entrypoint", e.target.value)} />
            </Field>
            <Field label="CPU cores" error={errorFor("cpus")}>
              <input type="number" min={0.5} step={0.5} inputMode="decimal" value={form.cpus} onChange={(e) => set("cpus", e.target.value)} />
            </Field>
            <Field label="Memory (GB)" error={errorFor("memory_mb")}>
              <input type="number" min={0.25} step={0.25} inputMode="decimal" value={form.memoryGb} onChange={(e) => set("memoryGb", e.target.value)} />
            </Field>
            <Field label="GPUs" error={errorFor("gpus")}>
              <input type="number" min={0} step={1} inputMode="numeric" value={form.gpus} onChange={(e) => set("gpus", e.target.value)} />
            </Field>
            <Field label="Timeout (minutes)" error={errorFor("timeout_seconds")}>
              <input type="number" min={1} step={1} inputMode="numeric" value={form.timeoutMinutes} onChange={(e) => set("timeoutMinutes", e.target.value)} />
            </Field>
            <Field
              label={mode === "group" ? "Cost cap per task (credits)" : "Cost cap (credits)"}
              error={errorFor("max_cost_micros")}
              hint={
                mode === "group"
                  ? "Each task's job holds this while it runs; what it does not use comes back when it ends."
                  : form.pool
                    ? "Held from the organisation's wallet while the job runs (within your monthly cap); what is not used comes back."
                    : "Held from your wallet while the job runs; what is not used comes back."
              }
            >
              <input inputMode="decimal" value={form.capCredits} onChange={(e) => set("capCredits", e.target.value)} />
            </Field>
            {mode === "group" && (
              <Field
                label="Group cost cap (credits)"
                error={errorFor("group_cap")}
                hint={groupCapHint(group, creditsToMicros(form.capCredits))}
              >
                <input inputMode="decimal" value={group.capCredits} onChange={(e) => setGroup((g) => ({ ...g, capCredits: e.target.value }))} />
              </Field>
            )}
            <details className="advanced" open={Boolean(errorFor("disk") ?? errorFor("work_exec"))}>
              <summary>Advanced: disk limits</summary>
              <Field label="Space in /work (MB)" error={errorFor("disk")} hint="The job's working folder; writing past it fails with “no space left”.">
                <input type="number" min={1} step={1} inputMode="numeric" value={form.workMb} onChange={(e) => set("workMb", e.target.value)} />
              </Field>
              <Field label="Space in /outputs (MB)">
                <input type="number" min={1} step={1} inputMode="numeric" value={form.outputsMb} onChange={(e) => set("outputsMb", e.target.value)} />
              </Field>
              <Field label="Space in /tmp (MB)">
                <input type="number" min={1} step={1} inputMode="numeric" value={form.tmpMb} onChange={(e) => set("tmpMb", e.target.value)} />
              </Field>
              <div className="field checkbox">
                <label>
                  <input type="checkbox" checked={form.workExec} onChange={(e) => set("workExec", e.target.checked)} /> Allow executables in /work
                </label>
                {errorFor("work_exec") && <small className="field-error" role="alert">{errorFor("work_exec")}</small>}
              </div>
            </details>
          </fieldset>

          {poolChoices.choices.length > 0 && (
            <fieldset data-testid="run-in" aria-describedby={errorFor("pool") ? "pool-error" : "pool-hint"}>
              <legend>Run in</legend>
              <div className="field checkbox">
                <label>
                  <input
                    type="radio"
                    name="pool"
                    checked={form.pool === ""}
                    disabled={poolChoices.requiring.length > 0}
                    onChange={() => setForm((f) => ({ ...f, pool: "", host: f.placement === "host" ? "" : f.host }))}
                  />{" "}
                  The public marketplace{poolChoices.requiring.length > 0 ? " (not open to you: your organisation requires its pool)" : ""}
                </label>
                {poolChoices.choices.map((c) => (
                  <label key={c.id}>
                    <input
                      type="radio"
                      name="pool"
                      checked={form.pool === String(c.id)}
                      onChange={() => setForm((f) => ({ ...f, pool: String(c.id), host: f.placement === "host" ? "" : f.host }))}
                    />{" "}
                    {c.name}&apos;s pool{c.required ? " (required by the organisation)" : ""}
                    {c.membersFree ? " — free for members" : ""}
                  </label>
                ))}
              </div>
              <small id="pool-hint" className="hint">
                In a pool the job runs only on the organisation&apos;s machines (it waits for one, never goes elsewhere) and is paid from its wallet.
                {month.data && (
                  <span data-testid="pool-month">
                    {" "}
                    {month.data.cap_micros === null
                      ? `You have spent ${formatCredits(month.data.spent_micros)} of it this month; no cap of your own.`
                      : `This month you have spent ${formatCredits(month.data.spent_micros)} of your ${formatCredits(month.data.cap_micros)} cap.`}
                  </span>
                )}
              </small>
              {errorFor("pool") && (
                <small id="pool-error" className="field-error" role="alert">
                  {errorFor("pool")}
                </small>
              )}
            </fieldset>
          )}
          {poolChoices.choices.length === 0 && errorFor("pool") && (
            <p className="field-error" role="alert">
              {errorFor("pool")}
            </p>
          )}

          <fieldset>
            <legend>Placement</legend>
            <div className="field checkbox">
              <label>
                <input type="radio" name="placement" checked={form.placement === "auto"} onChange={() => set("placement", "auto")} /> Automatic: the
                cheapest reliable machine that fits{form.pool ? " in the pool" : ""}
              </label>
              <label>
                <input type="radio" name="placement" checked={form.placement === "host"} onChange={() => set("placement", "host")} /> Choose a machine
              </label>
            </div>
            {form.placement === "host" && (
              <Field label="Machine" error={errorFor("host") ?? errorFor("placement")}>
                <select value={form.host} onChange={(e) => set("host", e.target.value)}>
                  <option value="">Choose…</option>
                  {hostOptions.map((h) => (
                    <option key={h.id} value={h.id}>
                      {h.name || `Host #${h.id}`} — {h.cpus} cores, {Math.round(h.memory_mb / 1024)} GB
                      {h.isolation === "none" ? " — no isolation" : ""}
                      {view ? (fits.has(h.id) ? " (fits)" : ` (does not fit: ${hostMisfits(h, fitSpec).join(", ") || "see the quote"})`) : ""}
                    </option>
                  ))}
                </select>
              </Field>
            )}
            {form.placement === "host" && (
              <IsolationWarning isolation={hostOptions.find((h) => String(h.id) === form.host)?.isolation} />
            )}
            {form.placement === "auto" && errorFor("placement") && <p className="field-error" role="alert">{errorFor("placement")}</p>}
          </fieldset>

          <section id="quote-box" className="quote" aria-labelledby="quote-h">
            <h2 id="quote-h">Quote</h2>
            <div aria-live="polite" data-testid="quote">
              {!canQuote && <p className="muted">Fill in the form to see a price.</p>}
              {canQuote && live.loading && <Busy label="Updating the quote…" />}
              {canQuote && !live.loading && live.error !== null && Object.keys(quoteErrors).length === 0 && (
                <p className="field-error">{(live.error as Error).message}</p>
              )}
              {canQuote && !live.loading && view && (
                <>
                  {view.misfit && <p className="field-error">{view.misfit}</p>}
                  <p>
                    {mode === "group" && "Each task: "}At most <strong data-testid="quote-estimate">{view.estimateMicros !== null ? formatCredits(view.estimateMicros) : "—"}</strong> if
                    it runs the whole timeout
                    {view.hourlyMicros !== null && <> ({formatCredits(view.hourlyMicros)} per hour)</>}. You pay for what it uses.
                  </p>
                  {mode === "group" && tasks !== null && view.estimateMicros !== null && (
                    <p className="small" data-testid="quote-group">
                      {tasks} task{tasks === 1 ? "" : "s"}: at most {formatCredits(tasks * view.estimateMicros)} in all if each runs the whole timeout,
                      and never more than the group cost cap.
                    </p>
                  )}
                  {view.minimumCapMicros !== null && <p className="small">The cap must cover at least one minute: {formatCredits(view.minimumCapMicros)}.</p>}
                  {capStopsEarly(view, creditsToMicros(form.capCredits)) && (
                    <p className="small">
                      Your cap stops the job after about {formatDuration(capStopsEarly(view, creditsToMicros(form.capCredits))!)} at full use
                      (status “stopped: the cost cap was reached”).
                    </p>
                  )}
                  <p className="small">
                    {view.hosts.length} machine{view.hosts.length === 1 ? "" : "s"} fit{view.hosts.length === 1 ? "s" : ""}
                    {view.hosts.length > 0 && `; cheapest: ${view.hosts[0]!.name}`}.
                  </p>
                  {noneFitWhy.length > 0 && (
                    <ul className="small" data-testid="why-none-fits">
                      {noneFitWhy.map((why) => (
                        <li key={why}>{why}</li>
                      ))}
                    </ul>
                  )}
                </>
              )}
            </div>
          </section>

          <button type="submit" className="primary" disabled={submitting || uploadsWait !== null} aria-describedby={uploadsWait ? "uploads-wait" : undefined}>
            {submitting ? "Submitting…" : mode === "group" ? (tasks ? `Run ${tasks} task${tasks === 1 ? "" : "s"}` : "Run the tasks") : "Run"}
          </button>
          {uploadsWait && (
            <p id="uploads-wait" className="small" data-testid="uploads-wait">
              {uploadsWait}
            </p>
          )}
          {submitting && <Busy label={mode === "group" ? "Placing the first tasks' holds and queueing them…" : "Placing the hold and queueing your job…"} />}
        </div>
      </form>
    </section>
  );
}
