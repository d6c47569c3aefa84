// The job page's pool parts (docs/pools.md): outputs kept on the organisation's store with
// their release state and the renter's "Ask for its release", and the sentence shown instead
// of a log the pool keeps on its store or doesn't keep.

import { useState } from "react";
import { Link } from "react-router";
import { outputUrl } from "../../api/endpoints";
import { outputRelease, pools, type OutputPoolView, type PoolLogs } from "../../api/pools";
import type { Job } from "../../api/types";
import { formatBytes } from "../../lib/files";
import { useLoad } from "../../lib/hooks";
import { ErrorBanner } from "../ErrorBanner";
import { Sha } from "../Sha";
import { RELEASE_WORDS } from "./Releases";

export type ShownOutput = { name: string; size?: number; sha256: string } & OutputPoolView;

/** Where the job's log went: the job says so; else the pool's settings (a job not in a pool: central). */
export function usePoolLogs(job: Pick<Job, "pool" | "pool_logs"> | null): PoolLogs | null {
  const pool = job?.pool ?? null;
  const fromJob = job?.pool_logs;
  const settings = useLoad(() => (pool && !fromJob ? pools.settings(pool) : Promise.resolve(null)), [pool, fromJob]);
  if (!job) return null;
  if (fromJob) return fromJob;
  if (!pool) return "central";
  if (settings.data) return settings.data.pool_logs ?? "central";
  // The settings can't be read (the pool's admins changed the members): show the log as sent.
  return settings.error !== null ? "central" : null;
}

export function PoolLogNotice({ mode, pool }: { mode: PoolLogs; pool: number | null | undefined }) {
  const org = pool ? <Link to={`/organisations/${pool}?tab=pool`}>the organisation</Link> : "the organisation";
  return (
    <p className="banner banner-info" data-testid="pool-log-notice">
      {mode === "store" ? (
        <>This job ran in a pool that keeps its logs on {org}&apos;s own store, inside the institution: the server never received the log, so it can&apos;t be shown here. Ask the organisation&apos;s admins for it.</>
      ) : (
        <>This job ran in a pool that keeps no job logs: the log was neither sent to the server nor stored anywhere (only its size is known). Write what you need to keep to /outputs.</>
      )}
    </p>
  );
}

function OutputLine({ jobId, output, onChanged }: { jobId: number; output: ShownOutput; onChanged: () => void }) {
  const { location, state, note } = outputRelease(output);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const downloadable = location === "central" || state === "released";
  const ask = async () => {
    setError(null);
    setBusy(true);
    try {
      await pools.outputRelease(jobId, output.name);
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <li data-testid={`output-${output.name}`}>
      {downloadable ? (
        <a href={outputUrl(jobId, output.name)} download>
          {output.name}
        </a>
      ) : (
        <span className="wrap">{output.name}</span>
      )}
      {output.size !== undefined && <span className="muted"> {formatBytes(output.size)}</span>} <Sha sha256={output.sha256} of={output.name} />
      {location === "pool" && (
        <span className="output-state small" role="status">
          {RELEASE_WORDS[state] ?? state}
          {state === "none" ? ": it leaves only when released." : ""}
          {note ? ` Note: “${note}”` : ""}
        </span>
      )}
      {location === "pool" && state === "none" && (
        <button type="button" disabled={busy} onClick={() => void ask()}>
          {busy ? "Asking…" : `Ask for the release of ${output.name}`}
        </button>
      )}
      <ErrorBanner error={error} />
    </li>
  );
}

export function OutputsList({ jobId, outputs, onChanged }: { jobId: number; outputs: ShownOutput[]; onChanged: () => void }) {
  if (outputs.length === 0) return <p className="muted">No output files.</p>;
  const kept = outputs.some((o) => outputRelease(o).location === "pool");
  return (
    <>
      {kept && (
        <p className="small">
          Some outputs are kept on the organisation&apos;s store: they can be downloaded once they are released (with the pool&apos;s airlock, after a
          data steward approves).
        </p>
      )}
      <ul className="outputs" data-testid="job-outputs">
        {outputs.map((o) => (
          <OutputLine key={o.name} jobId={jobId} output={o} onChanged={onChanged} />
        ))}
      </ul>
    </>
  );
}
