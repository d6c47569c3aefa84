import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import type { JobGroup, JobGroupDetail, TaskCounts } from "../api/types";
import { ErrorBanner } from "../components/ErrorBanner";
import { Money } from "../components/Money";
import { Busy, Loading } from "../components/Progress";
import { GroupStatusBadge } from "../components/StatusBadge";
import { TaskFilter, TaskGrid } from "../components/TaskGrid";
import { groupSocketOpen, type GroupProgress } from "../lib/groupSocket";
import { useInterval } from "../lib/hooks";
import { isGroupEnded, taskStatusLabel, TASK_STATUSES } from "../lib/jobStatus";
import type { SocketState } from "../lib/jobSocket";
import { formatDateTime, formatDuration, formatMemory } from "../lib/money";

/** Tasks per page of the grid (the API allows up to 500). */
export const TASK_PAGE_SIZE = 200;

/** How many tasks have ended, and the sentence that says how. */
export function progressText(counts: TaskCounts, count: number): { ended: number; text: string } {
  const ended = count - counts.pending - counts.running;
  const how = TASK_STATUSES.filter((s) => s !== "pending" && s !== "running" && counts[s] > 0).map((s) => `${counts[s]} ${taskStatusLabel(s).toLowerCase()}`);
  const live = [counts.running ? `${counts.running} running` : "", counts.pending ? `${counts.pending} waiting to start` : ""].filter(Boolean);
  const text = `${ended} of ${count} task${count === 1 ? "" : "s"} ended${how.length ? `: ${how.join(", ")}` : ""}${live.length ? `; ${live.join(", ")}` : ""}.`;
  return { ended, text };
}

/** The group's own fields from a list shape or a socket push, keeping the page of tasks held. */
function groupMerge(group: JobGroupDetail | null, fresh: GroupProgress | JobGroup): JobGroupDetail | null {
  if (!group) return group;
  const { status, status_reason, count, counts, cost_micros, open_tasks, cancel_requested } = fresh;
  return { ...group, status, status_reason, count, counts, cost_micros, open_tasks, cancel_requested };
}

/**
 * The group with the page of tasks the URL asks for. `reload` coalesces: while one read is in
 * flight, calls made meanwhile become one more read after it (a busy group pushes after every
 * task), and an answer for a page or filter no longer shown is dropped.
 */
function useGroupDetail(id: number, page: number, status: string) {
  const [group, setGroup] = useState<JobGroupDetail | null>(null);
  const [error, setError] = useState<unknown>(null);
  const wanted = useRef("");
  wanted.current = `${id}|${page}|${status}`;
  const inFlight = useRef(false);
  const again = useRef(false);

  const reload = useCallback(async () => {
    if (inFlight.current) {
      again.current = true;
      return;
    }
    inFlight.current = true;
    try {
      do {
        again.current = false;
        const asked = wanted.current;
        const [, pageAsked, statusAsked] = asked.split("|");
        try {
          const fresh = await api.group(id, { page: Number(pageAsked), page_size: TASK_PAGE_SIZE, status: statusAsked || undefined });
          if (asked === wanted.current) {
            setGroup(fresh);
            setError(null);
          } else again.current = true;
        } catch (err) {
          if (asked === wanted.current) setError(err);
          else again.current = true;
        }
      } while (again.current);
    } finally {
      inFlight.current = false;
    }
  }, [id]);

  useEffect(() => {
    void reload();
  }, [reload, page, status]);

  return { group, setGroup, error, reload };
}

function CancelGroup({ group, onCancelled }: { group: JobGroupDetail; onCancelled: (fresh: JobGroup) => void }) {
  const [confirming, setConfirming] = useState(false);
  const [cancelling, setCancelling] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const cancel = async () => {
    setConfirming(false);
    setCancelling(true);
    setError(null);
    try {
      onCancelled(await api.groupCancel(group.id));
    } catch (err) {
      setError(err);
    } finally {
      setCancelling(false);
    }
  };

  if (isGroupEnded(group.status)) return null;
  if (group.cancel_requested) return <Busy label="Cancel requested: no more tasks start; stopping the running ones on their hosts…" />;
  const { pending, running } = group.counts;
  return (
    <>
      {!confirming ? (
        <button type="button" className="danger" onClick={() => setConfirming(true)} disabled={cancelling}>
          {cancelling ? "Cancelling…" : "Cancel group"}
        </button>
      ) : (
        <div className="confirm" role="group" aria-labelledby="group-cancel-q">
          <p id="group-cancel-q">
            Stop this group? No more tasks start ({pending} waiting {pending === 1 ? "is" : "are"} skipped) and its {running} running task
            {running === 1 ? " is" : "s are"} cancelled. You pay for what they used so far; the rest of their holds goes back to your wallet.
            Tasks that ended keep their results.
          </p>
          <button type="button" className="danger" onClick={() => void cancel()} autoFocus>
            Yes, cancel the group
          </button>{" "}
          <button type="button" onClick={() => setConfirming(false)}>
            Keep it running
          </button>
        </div>
      )}
      <ErrorBanner error={error} />
    </>
  );
}

function GroupFacts({ group }: { group: JobGroupDetail }) {
  return (
    <dl className="facts inline">
      <dt>Cost so far</dt>
      <dd data-testid="group-cost">
        <Money micros={group.cost_micros} /> <span className="muted">of the group's cap</span> <Money micros={group.max_cost_micros} />
      </dd>
      <dt>Cap per task</dt>
      <dd>
        <Money micros={group.task_max_cost_micros} />
      </dd>
      <dt>Tasks at once</dt>
      <dd>
        at most {group.max_parallel} ({group.open_tasks} holding their cap now)
      </dd>
      <dt>Retries</dt>
      <dd>
        {group.host_fault_retries} after a host fault (on another host), {group.error_retries} after a script error
      </dd>
      <dt>Each task</dt>
      <dd>
        <code>{group.entrypoint}</code> · {group.cpus} cores · {formatMemory(group.memory_mb)} · {group.gpus} GPU · timeout {formatDuration(group.timeout_seconds)}
      </dd>
      <dt>Started</dt>
      <dd>{formatDateTime(group.created_at)}</dd>
      {group.finished_at && (
        <>
          <dt>Ended</dt>
          <dd>{formatDateTime(group.finished_at)}</dd>
        </>
      )}
    </dl>
  );
}

function TaskPager({ group, page, onPage }: { group: JobGroupDetail; page: number; onPage: (page: number) => void }) {
  const { count, next, previous } = group.tasks;
  if (!next && !previous) return null;
  const first = (page - 1) * TASK_PAGE_SIZE + 1;
  const last = Math.min(count, page * TASK_PAGE_SIZE);
  return (
    <nav className="pager" aria-label="Pages of tasks">
      <button type="button" disabled={!previous} onClick={() => onPage(page - 1)}>
        Previous
      </button>
      <span>
        Tasks {first}–{last} of {count}
      </span>
      <button type="button" disabled={!next} onClick={() => onPage(page + 1)}>
        Next
      </button>
    </nav>
  );
}

function socketText(state: SocketState, ended: boolean, retryIn: number | undefined): string {
  if (ended) return "";
  if (state === "open") return "Live.";
  if (state === "reconnecting") return `Connection lost; reconnecting${retryIn ? ` in ${Math.ceil(retryIn / 1000)} s` : ""}. Meanwhile the page reads the group every 5 s.`;
  if (state === "connecting") return "Connecting…";
  return "Not live: the page reads the group every 5 s.";
}

export function GroupPage() {
  const id = Number(useParams().id);
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const page = Number(params.get("page") ?? "1") || 1;
  const { group, setGroup, error, reload } = useGroupDetail(id, page, status);
  const [socketState, setSocketState] = useState<SocketState>("connecting");
  const [retryIn, setRetryIn] = useState<number | undefined>();
  const ended = isGroupEnded(group?.status);
  const endedRef = useRef(false);
  endedRef.current = ended;

  // The socket is a doorbell: each (re)connect and each push reads the group again; the push's
  // counts and cost show at once.
  useEffect(() => {
    const socket = groupSocketOpen(id, {
      shouldReconnect: () => !endedRef.current,
      onOpen: () => void reload(),
      onState: (state, delay) => {
        setSocketState(state);
        setRetryIn(delay);
      },
      onMessage: (progress) => {
        setGroup((g) => groupMerge(g, progress));
        void reload();
      },
    });
    return () => socket.close();
  }, [id, reload, setGroup]);

  useInterval(() => void reload(), !ended && socketState !== "open" ? 5000 : null);

  const show = (next: { status?: string; page?: number }) => {
    const query: Record<string, string> = {};
    const nextStatus = next.status ?? status;
    const nextPage = next.page ?? page;
    if (nextStatus) query.status = nextStatus;
    if (nextPage > 1) query.page = String(nextPage);
    setParams(query);
  };

  if (!group) return error ? <ErrorBanner error={error} /> : <Loading />;

  const progress = progressText(group.counts, group.count);
  const filtered = status ? `${taskStatusLabel(status).toLowerCase()} ` : "";
  return (
    <section>
      <h1>
        {group.name || group.entrypoint || "Group"} <span className="muted">· group #{group.id}</span>
      </h1>
      <p>
        <Link to="/groups">All groups</Link>
      </p>
      <ErrorBanner error={error} />
      <div className="job-head">
        <p data-testid="group-status">
          <GroupStatusBadge status={group.status} counts={group.counts} />
          {group.status_reason && <span className="reason"> {group.status_reason}</span>}
        </p>
        <div className="group-progress" aria-live="polite" data-testid="group-progress">
          <progress max={Math.max(group.count, 1)} value={progress.ended} aria-label="Tasks ended" />
          <p>{progress.text}</p>
        </div>
        <GroupFacts group={group} />
        <CancelGroup
          group={group}
          onCancelled={(fresh) => {
            setGroup((g) => groupMerge(g, fresh));
            void reload();
          }}
        />
      </div>

      <section aria-labelledby="tasks-h">
        <h2 id="tasks-h">Tasks</h2>
        <p className="muted small" aria-live="polite">
          {socketText(socketState, ended, retryIn)}
        </p>
        <TaskFilter counts={group.counts} count={group.count} selected={status} onSelect={(s) => show({ status: s, page: 1 })} />
        <p className="small muted">Each task is a job: open one for its log, outputs and receipt.</p>
        {group.tasks.results.length === 0 ? (
          <p>{status ? `No ${filtered}tasks.` : "No tasks."}</p>
        ) : (
          <TaskGrid tasks={group.tasks.results} label={`${status ? `${taskStatusLabel(status)} tasks` : "Tasks"}, by index`} />
        )}
        <TaskPager group={group} page={page} onPage={(p) => show({ page: p })} />
      </section>
    </section>
  );
}
