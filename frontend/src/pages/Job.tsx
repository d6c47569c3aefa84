import { IsolationWarning } from "../components/IsolationWarning";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useParams } from "react-router";
import { api } from "../api/endpoints";
import type { JobInputView } from "../api/blobs";
import type { Job, JobEvent, OutputFile, Receipt, UsageHistory } from "../api/types";
import { Chart, type Point } from "../components/Chart";
import { ErrorBanner } from "../components/ErrorBanner";
import { HostName } from "../components/HostName";
import { Money } from "../components/Money";
import { LogView } from "../components/LogView";
import { Busy, Loading } from "../components/Progress";
import { ReceiptView } from "../components/Receipt";
import { Sha } from "../components/Sha";
import { StatusBadge } from "../components/StatusBadge";
import { StatusTimeline } from "../components/StatusTimeline";
import { OutputsList, PoolLogNotice, usePoolLogs, type ShownOutput } from "../components/pool/JobPoolParts";
import { formatBytes } from "../lib/files";
import { useInterval } from "../lib/hooks";
import { isTerminal, reasonWorthShowing, statusLabel, WAITING_TEXT } from "../lib/jobStatus";
import { jobSocketOpen, type SocketState, type UsageMessage } from "../lib/jobSocket";
import { LogBuffer } from "../lib/logBuffer";
import { creditsText, formatDateTime, formatDuration, formatMemory } from "../lib/money";

/** The job's own steps plus the socket's, each status (per attempt) once, in time order. */
export function mergeEvents(base: JobEvent[], live: JobEvent[]): JobEvent[] {
  const same = (a: JobEvent, b: JobEvent) =>
    a.status === b.status && (a.attempt === undefined || b.attempt === undefined || a.attempt === b.attempt);
  const merged = [...base];
  for (const event of live) {
    const known = merged.findIndex((e) => same(e, event));
    if (known < 0) merged.push(event);
    else if (!merged[known]!.reason && event.reason) merged[known] = { ...merged[known]!, reason: event.reason };
  }
  const time = (e: JobEvent) => (e.at ? Date.parse(e.at) : Number.POSITIVE_INFINITY);
  return merged.map((e, i) => [e, i] as const).sort((a, b) => time(a[0]) - time(b[0]) || a[1] - b[1]).map(([e]) => e);
}

/** When the current status began: its live event, else the job's own timestamps. */
function waitingSince(events: JobEvent[], job: Job): number | null {
  const last = [...events].reverse().find((e) => e.status === job.status);
  const at = last?.at ?? (job.status === "running" ? job.started_at : job.status === "queued" ? (job.queued_at ?? job.created_at) : null);
  const time = at ? Date.parse(at) : NaN;
  return Number.isNaN(time) ? null : time;
}

/** The stored timeline (GET jobs/{id}/usage/): every step with its time, as JobEvents. */
export function storedEvents(history: UsageHistory): JobEvent[] {
  return history.timeline.map((e) => ({ status: e.status, reason: e.reason || undefined, attempt: e.attempt ?? undefined, at: e.at }));
}

/** The stored samples of the latest attempt that has any, as usage messages; then the live
 * ones that came after them (a page opened on a running job starts from its history). */
export function usageSeries(history: UsageHistory | null, live: UsageMessage[]): UsageMessage[] {
  const attempt = [...(history?.attempts ?? [])].reverse().find((a) => a.samples.length > 0);
  const stored: UsageMessage[] = (attempt?.samples ?? []).map((s) => ({
    kind: "usage",
    at: Date.parse(s.at),
    cpu_seconds: s.cpu_seconds,
    wall_seconds: s.wall_seconds,
    memory_current_mb: s.memory_current_mb,
    memory_peak_mb: s.memory_peak_mb,
    cost_micros: s.cost_micros,
  }));
  const last = stored[stored.length - 1];
  const newer = last ? live.filter((u) => u.at > last.at && (u.wall_seconds ?? Infinity) > (last.wall_seconds ?? -1)) : live;
  return [...stored, ...newer];
}

/** Where an input came from, in words: uploaded, or fetched by the host from a URL's site. */
export function inputSource(input: JobInputView): string {
  if (input.source !== "url") return "uploaded";
  try {
    return `fetched from ${new URL(input.url).host}`;
  } catch {
    return "fetched from a URL";
  }
}

function InputsTable({ inputs }: { inputs: JobInputView[] }) {
  return (
    <div className="table-wrap">
      <table className="stack" data-testid="job-inputs">
        <caption>Inputs, read-only in /inputs</caption>
        <thead>
          <tr>
            <th scope="col">Path</th>
            <th scope="col">Size</th>
            <th scope="col">sha256</th>
            <th scope="col">Source</th>
          </tr>
        </thead>
        <tbody>
          {inputs.map((input) => (
            <tr key={input.path}>
              <td data-label="Path">
                <code>{input.path}</code>
              </td>
              <td data-label="Size">{input.size !== null && input.size !== undefined ? formatBytes(input.size) : "not known yet"}</td>
              <td data-label="sha256">
                <Sha sha256={input.sha256} of={input.path} />
              </td>
              <td data-label="Source">{input.source === "url" ? <span title={input.url}>{inputSource(input)}</span> : inputSource(input)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The history the job itself tells (before its stored timeline has loaded): when it was
 * queued, started and finished; live socket events add the steps in between. */
function initialEvents(job: Job): JobEvent[] {
  const events: JobEvent[] = [{ status: "queued", at: job.queued_at }];
  if (job.started_at) events.push({ status: "running", at: job.started_at });
  if (job.finished_at) events.push({ status: job.status, reason: job.status_reason, at: job.finished_at });
  return events;
}

export function JobPage() {
  const id = Number(useParams().id);
  const [job, setJob] = useState<Job | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [liveEvents, setLiveEvents] = useState<JobEvent[]>([]);
  const [liveUsage, setUsage] = useState<UsageMessage[]>([]);
  const [history, setHistory] = useState<UsageHistory | null>(null);
  const [historyFailed, setHistoryFailed] = useState(false);
  const [socketState, setSocketState] = useState<SocketState>("connecting");
  const [retryIn, setRetryIn] = useState<number | undefined>();
  const [outputs, setOutputs] = useState<OutputFile[]>([]);
  const [receipt, setReceipt] = useState<Receipt | null>(null);
  const [receiptError, setReceiptError] = useState<unknown>(null);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [cancelling, setCancelling] = useState(false);
  const [confirmingCancel, setConfirmingCancel] = useState(false);
  const [now, setNow] = useState(() => Date.now());
  const buffer = useMemo(() => new LogBuffer((offset, attempt) => api.jobLogs(id, offset, attempt)), [id]);
  const terminal = isTerminal(job?.status);
  const logMode = usePoolLogs(job);
  const terminalRef = useRef(false);
  terminalRef.current = terminal;

  const reload = useCallback(async () => {
    try {
      const fresh = await api.job(id);
      setJob(fresh);
      setLoadError(null);
    } catch (err) {
      setLoadError(err);
    }
  }, [id]);

  useEffect(() => {
    void reload();
    void buffer.catchUp();
  }, [reload, buffer]);

  // The live socket; it is only a doorbell: every (re)connect refetches the job and the log.
  useEffect(() => {
    const socket = jobSocketOpen(id, {
      shouldReconnect: () => !terminalRef.current,
      onOpen: () => {
        void reload();
        void buffer.catchUp();
      },
      onState: (state, delay) => {
        setSocketState(state);
        setRetryIn(delay);
      },
      onMessage: (message) => {
        if (message.kind === "log") void buffer.push(message.offset, message.data, message.attempt, message.next_offset);
        else if (message.kind === "usage") setUsage((u) => [...u, message]);
        else {
          setLiveEvents((events) => [...events, { status: message.status, reason: message.reason, attempt: message.attempt, at: message.at ?? new Date().toISOString() }]);
          setJob((j) =>
            j
              ? {
                  ...j,
                  status: message.status as Job["status"],
                  status_reason: message.reason || j.status_reason,
                  attempt: message.attempt ?? j.attempt,
                }
              : j,
          );
          void reload();
        }
      },
    });
    return () => socket.close();
  }, [id, buffer, reload]);

  // A ticking clock for "waiting for N s" while the job is not finished.
  useInterval(() => setNow(Date.now()), terminal ? null : 1000);

  // Without a socket, poll; when the job ends, fetch the rest of the log, outputs and receipt.
  useInterval(() => {
    void reload();
    void buffer.catchUp();
  }, !terminal && socketState !== "open" ? 5000 : null);

  // The stored usage and timeline: on open (seeding the live charts), and once more at the end.
  useEffect(() => {
    api.jobUsage(id).then(
      (stored) => {
        setHistory(stored);
        setHistoryFailed(false);
      },
      () => setHistoryFailed(true),
    );
  }, [id, terminal]);

  const outputsLoad = useCallback(() => {
    api.jobOutputs(id).then((page) => setOutputs(page.results), () => setOutputs([]));
  }, [id]);

  useEffect(() => {
    if (!terminal) return;
    void buffer.catchUp();
    outputsLoad();
    api.jobReceipt(id).then(setReceipt, setReceiptError);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [terminal, id, buffer]);

  const cancel = async () => {
    setCancelError(null);
    setConfirmingCancel(false);
    setCancelling(true);
    try {
      const updated = await api.jobCancel(id);
      if (updated && typeof updated === "object" && "status" in updated) setJob(updated);
      else await reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setCancelling(false);
    }
  };

  if (!job) return loadError ? <ErrorBanner error={loadError} /> : <Loading />;

  const events = mergeEvents(history ? storedEvents(history) : initialEvents(job), liveEvents);
  const usage = usageSeries(history, liveUsage);
  // x is seconds since the job started running (the agent's wall time when a report has it).
  const origin = job.started_at ? Date.parse(job.started_at) : (usage[0]?.at ?? 0);
  const costPoints: Point[] = usage
    .filter((u) => u.cost_micros !== undefined)
    .map((u) => {
      const x = Math.max(0, Math.round(u.wall_seconds ?? (u.at - origin) / 1000));
      return { x, y: u.cost_micros!, label: formatDuration(x) };
    });
  const cpuPoints: Point[] = [];
  for (let i = 1; i < usage.length; i++) {
    const a = usage[i - 1]!;
    const b = usage[i]!;
    if (a.cpu_seconds === undefined || b.cpu_seconds === undefined || a.wall_seconds === undefined || b.wall_seconds === undefined) continue;
    const dt = b.wall_seconds - a.wall_seconds;
    if (dt > 0) cpuPoints.push({ x: b.wall_seconds, y: (b.cpu_seconds - a.cpu_seconds) / dt, label: formatDuration(b.wall_seconds) });
  }
  const memPoints: Point[] = usage
    .filter((u) => u.memory_current_mb !== undefined && u.wall_seconds !== undefined)
    .map((u) => ({ x: u.wall_seconds!, y: u.memory_current_mb!, label: formatDuration(u.wall_seconds!) }));
  const lastUsage = usage[usage.length - 1];
  // The job detail lists its outputs once the server has them; else the outputs endpoint's page.
  const shownOutputs: ShownOutput[] = job.outputs?.length ? job.outputs : outputs;
  const costSoFar = lastUsage?.cost_micros ?? job.cost_micros;
  const hostId = job.host;

  return (
    <section>
      <h1>
        {job.name || job.entrypoint || "Job"} <span className="muted">· job #{job.id}</span>
      </h1>
      <div className="job-head">
        <p aria-live="polite" data-testid="job-status">
          <StatusBadge status={job.status} />
          {reasonWorthShowing(job.status, job.status_reason) && <span className="reason"> {job.status_reason}</span>}
          {job.exit_code !== null && !job.status_reason.includes("exit code") && <span className="muted"> · exit code {job.exit_code}</span>}
        </p>
        {job.status === "queued" && (job.waiting_reason || job.queue_position) && (
          <p className="small" data-testid="job-waiting">
            {job.queue_position ? <>Number {job.queue_position} in the queue. </> : null}
            {job.waiting_reason ? `${job.waiting_reason.charAt(0).toUpperCase()}${job.waiting_reason.slice(1)}.` : null}
          </p>
        )}
        {job.host_isolation === "none" && (
          <p>
            <IsolationWarning isolation={job.host_isolation} />
          </p>
        )}
        {!terminal && (
          <Busy
            label={WAITING_TEXT[job.status] ?? statusLabel(job.status)}
            detail={[
              waitingSince(events, job) !== null ? `${formatDuration((now - waitingSince(events, job)!) / 1000)} so far` : null,
              job.attempt && job.attempt > 1 ? `attempt ${job.attempt}` : null,
            ]
              .filter(Boolean)
              .join(", ") || undefined}
          />
        )}
        <dl className="facts inline">
          <dt>Cost so far</dt>
          <dd data-testid="cost-so-far">
            <Money micros={costSoFar} />
          </dd>
          <dt>Cap</dt>
          <dd>
            <Money micros={job.max_cost_micros} />
          </dd>
          <dt>Host</dt>
          <dd>{hostId ? <HostName id={hostId} /> : "not placed yet"}</dd>
          <dt>Resources</dt>
          <dd>
            {job.cpus} cores · {formatMemory(job.memory_mb)} · {job.gpus ?? 0} GPU · timeout {formatDuration(job.timeout_seconds)}
          </dd>
          {job.disk && (
            <>
              <dt>Disk</dt>
              <dd data-testid="job-disk">
                /work {job.disk.work_mb} MB · /outputs {job.disk.outputs_mb} MB · /tmp {job.disk.tmp_mb} MB
                {job.work_exec ? " · executables allowed in /work" : ""}
              </dd>
            </>
          )}
          {job.group != null && (
            <>
              <dt>Group</dt>
              <dd data-testid="job-group">
                <Link to={`/groups/${job.group}`}>
                  Task #{job.task_index} of group #{job.group}
                </Link>
              </dd>
            </>
          )}
          {job.pool != null && (
            <>
              <dt>Runs in</dt>
              <dd data-testid="job-pool">
                <Link to={`/organisations/${job.pool}`}>the private pool of organisation #{job.pool}</Link>
              </dd>
            </>
          )}
          <dt>Submitted</dt>
          <dd>{formatDateTime(job.created_at)}</dd>
        </dl>
        {!terminal && !job.cancel_requested && !confirmingCancel && (
          <button type="button" className="danger" onClick={() => setConfirmingCancel(true)} disabled={cancelling}>
            {cancelling ? "Cancelling…" : "Cancel job"}
          </button>
        )}
        {!terminal && !job.cancel_requested && confirmingCancel && (
          <div className="confirm" role="group" aria-labelledby="cancel-confirm-q">
            <p id="cancel-confirm-q">
              Stop this job? It ends at once; you pay for what it has used so far and the rest of the hold goes back to your wallet.
            </p>
            <button type="button" className="danger" onClick={() => void cancel()} autoFocus>
              Yes, cancel the job
            </button>{" "}
            <button type="button" onClick={() => setConfirmingCancel(false)}>
              Keep it running
            </button>
          </div>
        )}
        {!terminal && job.cancel_requested && <Busy label="Cancel requested: stopping the job on its host…" />}
        <ErrorBanner error={cancelError} />
      </div>

      <div className="grid-2">
        <section aria-labelledby="timeline-h">
          <h2 id="timeline-h">Status</h2>
          <StatusTimeline status={job.status} reason={job.status_reason} attempt={job.attempt} events={events} />
        </section>
        <section aria-labelledby="usage-h">
          <h2 id="usage-h">Usage</h2>
          {costPoints.length >= 2 ? (
            <Chart title="Cost so far" series={[{ name: "Cost", points: costPoints }]} yFormat={(y) => creditsText(y)} minStep={1} showTable />
          ) : (
            <p className="muted">
              {terminal
                ? history
                  ? "The host reported too little usage to draw (the job ended within its first report or two)."
                  : historyFailed
                    ? "The stored usage could not be loaded; reload the page to try again."
                    : "Loading the stored usage…"
                : "The cost chart fills in while the job runs."}
            </p>
          )}
          {cpuPoints.length > 1 && <Chart title="CPU cores in use" series={[{ name: "Cores", points: cpuPoints }]} height={160} />}
          {memPoints.length > 1 && <Chart title="Memory in use (MB)" series={[{ name: "Memory", points: memPoints }]} height={160} />}
        </section>
      </div>

      {job.inputs && job.inputs.length > 0 && (
        <section aria-labelledby="inputs-h">
          <h2 id="inputs-h">Inputs</h2>
          <InputsTable inputs={job.inputs} />
        </section>
      )}

      <section aria-labelledby="log-h">
        <h2 id="log-h">Log</h2>
        <p className="muted small" aria-live="polite">
          {socketState === "open" && !terminal && "Live."}
          {socketState === "reconnecting" && `Connection lost; reconnecting${retryIn ? ` in ${Math.ceil(retryIn / 1000)} s` : ""}. The log is filled in from where it stopped.`}
          {socketState === "connecting" && "Connecting…"}
        </p>
        {logMode === "store" || logMode === "redacted" ? <PoolLogNotice mode={logMode} pool={job.pool} /> : <LogView buffer={buffer} />}
      </section>

      {terminal && (
        <>
          <section aria-labelledby="outputs-h">
            <h2 id="outputs-h">Outputs</h2>
            <OutputsList
              jobId={job.id}
              outputs={shownOutputs}
              onChanged={() => {
                void reload();
                outputsLoad();
              }}
            />
          </section>
          <section aria-labelledby="receipt-h">
            <h2 id="receipt-h">Receipt</h2>
            {receipt ? <ReceiptView receipt={receipt} showHost={(id) => <HostName id={id} link={false} />} /> : receiptError ? <ErrorBanner error={receiptError} /> : <Loading />}
          </section>
        </>
      )}
    </section>
  );
}
