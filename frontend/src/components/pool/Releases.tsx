import { useState } from "react";
import { Link } from "react-router";
import { pools, type ReleaseRequest, type ReleaseState } from "../../api/pools";
import { formatBytes } from "../../lib/files";
import { useFormErrors } from "../../lib/forms";
import { useLoad } from "../../lib/hooks";
import { formatDateTime } from "../../lib/money";
import { ErrorBanner } from "../ErrorBanner";
import { Field } from "../Field";
import { Loading } from "../Progress";
import { Sha } from "../Sha";

/** A release's state in words (the outputs on the job page use the same). */
export const RELEASE_WORDS: Record<ReleaseState, string> = {
  none: "Kept on the organisation's store",
  requested: "Release requested: waiting for a data steward",
  approved: "Release approved: being copied from the organisation's store",
  refused: "Release refused by a data steward",
  released: "Released",
};

function Decide({ orgId, release, onDecided }: { orgId: number; release: ReleaseRequest; onDecided: () => void }) {
  const errors = useFormErrors(["note"]);
  const [note, setNote] = useState("");
  const [local, setLocal] = useState<string | undefined>();
  const [busy, setBusy] = useState<"approve" | "refuse" | null>(null);
  const decide = async (how: "approve" | "refuse") => {
    errors.clear();
    if (how === "refuse" && !note.trim()) {
      setLocal("Say why the output may not leave: the person who ran the job reads it.");
      return;
    }
    setLocal(undefined);
    setBusy(how);
    try {
      if (how === "approve") await pools.releaseApprove(orgId, release.id, note.trim());
      else await pools.releaseRefuse(orgId, release.id, note.trim());
      onDecided();
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(null);
    }
  };
  return (
    <div className="inline-form">
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <Field label={`Note on ${release.name}`} error={errors.fieldError("note") ?? local} hint="Recorded in the audit trail with your decision.">
        <textarea rows={2} value={note} onChange={(e) => setNote(e.target.value)} />
      </Field>
      <button type="button" className="primary" disabled={busy !== null} onClick={() => void decide("approve")}>
        {busy === "approve" ? "Approving…" : "Approve release"}
      </button>
      <button type="button" className="danger" disabled={busy !== null} onClick={() => void decide("refuse")}>
        {busy === "refuse" ? "Refusing…" : "Refuse"}
      </button>
    </div>
  );
}

export function ReleasesSection({ orgId, canDecide }: { orgId: number; canDecide: boolean }) {
  const [status, setStatus] = useState<ReleaseState | "">("requested");
  const [reloadKey, setReloadKey] = useState(0);
  const [done, setDone] = useState<string | null>(null);
  const releases = useLoad(() => pools.releases(orgId, status), [orgId, status, reloadKey]);
  return (
    <section aria-labelledby="releases-h">
      <h2 id="releases-h">Releases</h2>
      <p className="small">
        Outputs of the pool&apos;s jobs kept on the organisation&apos;s store reach the person who ran the job only once a data steward approves
        their release.{canDecide ? "" : " Only data stewards decide; you see the requests."}
      </p>
      <Field label="Show">
        <select value={status} onChange={(e) => setStatus(e.target.value as ReleaseState | "")}>
          <option value="requested">Waiting for a decision</option>
          <option value="approved">Approved</option>
          <option value="released">Released</option>
          <option value="refused">Refused</option>
          <option value="">All</option>
        </select>
      </Field>
      <p role="status" className="small">
        {done ?? ""}
      </p>
      {releases.error !== null && <ErrorBanner error={releases.error} />}
      {!releases.data && releases.loading && <Loading />}
      {releases.data && releases.data.results.length === 0 && <p>{status === "requested" ? "No outputs are waiting for a decision." : "None."}</p>}
      {releases.data && releases.data.results.length > 0 && (
        <ul className="host-list" data-testid="releases">
          {releases.data.results.map((r) => (
            <li key={r.id}>
              <div className="host-line">
                <strong className="wrap">{r.name}</strong>
                {r.size !== null && <span className="muted"> {formatBytes(r.size)}</span>} <Sha sha256={r.sha256} of={r.name} />
              </div>
              <p className="small">
                From <Link to={`/jobs/${r.job_id}`}>job #{r.job_id}</Link>
                {r.requested_by ? ` of ${r.requested_by}` : ""}
                {r.requested_at ? `, asked ${formatDateTime(r.requested_at)}` : ""}. {RELEASE_WORDS[r.status] ?? r.status}
                {r.decided_by ? ` (${r.decided_by}${r.decided_at ? `, ${formatDateTime(r.decided_at)}` : ""})` : ""}
                {r.note ? `: “${r.note}”` : ""}.
              </p>
              {canDecide && r.status === "requested" && (
                <Decide
                  orgId={orgId}
                  release={r}
                  onDecided={() => {
                    setDone(`Decision recorded for ${r.name}.`);
                    setReloadKey((k) => k + 1);
                  }}
                />
              )}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
