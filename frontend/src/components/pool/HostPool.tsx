// The Hosting page's pool line for one machine: which organisation's pool it serves, "Join a
// pool" with the token an admin of the organisation gave, and "Leave".

import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { ApiError } from "../../api/errors";
import { pools } from "../../api/pools";
import { useFormErrors } from "../../lib/forms";
import { ErrorBanner } from "../ErrorBanner";
import { Field } from "../Field";

export interface HostPoolProps {
  host: { id: number; name?: string; organisation?: number | null };
  /** The user's organisations by id, to name the pool (a host's owner need not be a member). */
  orgNames: Map<number, string>;
  onChanged: () => void;
}

export function HostPool({ host, orgNames, onChanged }: HostPoolProps) {
  const pool = host.organisation ?? null;
  const label = host.name || `Host #${host.id}`;
  const errors = useFormErrors(["token"]);
  const [open, setOpen] = useState(false);
  const [token, setToken] = useState("");
  const [local, setLocal] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [confirmLeave, setConfirmLeave] = useState(false);
  const [leaveError, setLeaveError] = useState<unknown>(null);

  const join = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    if (!token.trim()) {
      setLocal("Paste the pool token an admin of the organisation gave you.");
      return;
    }
    setLocal(undefined);
    setBusy(true);
    try {
      await pools.hostJoin(host.id, token.trim());
      setOpen(false);
      setToken("");
      onChanged();
    } catch (err) {
      // invalid_token names no field: show its sentence at the token
      if (err instanceof ApiError && !Object.keys(err.fields).length && err.status === 400) setLocal(err.message);
      else errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  const leave = async () => {
    setConfirmLeave(false);
    setLeaveError(null);
    try {
      await pools.hostLeave(host.id);
      onChanged();
    } catch (err) {
      setLeaveError(err);
    }
  };

  if (pool !== null) {
    const name = orgNames.get(pool);
    return (
      <div className="small" data-testid={`host-pool-${host.id}`}>
        <p>
          In the private pool of{" "}
          {name ? <Link to={`/organisations/${pool}?tab=hosts`}>{name}</Link> : `organisation #${pool}`}: it takes that organisation&apos;s jobs
          {" "}(and, unless the pool keeps its machines out of the catalog, public ones).{" "}
          {!confirmLeave && (
            <button type="button" className="link-button" onClick={() => setConfirmLeave(true)}>
              Leave the pool
            </button>
          )}
        </p>
        {confirmLeave && (
          <div className="confirm" role="group" aria-label={`Leave the pool with ${label}`}>
            <p>Take {label} out of the pool? It stops taking the pool&apos;s jobs; rejoining needs a new token from an admin of the organisation.</p>
            <button type="button" className="danger" onClick={() => void leave()}>
              Yes, leave the pool
            </button>{" "}
            <button type="button" onClick={() => setConfirmLeave(false)}>
              Stay
            </button>
          </div>
        )}
        <ErrorBanner error={leaveError} />
      </div>
    );
  }

  return (
    <div className="small" data-testid={`host-pool-${host.id}`}>
      {!open ? (
        <button type="button" onClick={() => setOpen(true)} aria-expanded={false}>
          Join a pool
        </button>
      ) : (
        <form className="inline-form" onSubmit={(e) => void join(e)} noValidate aria-label={`Join a pool with ${label}`}>
          <ErrorBanner message={errors.banner} details={errors.otherFields} />
          <Field label="Pool token" error={errors.fieldError("token") ?? local} hint="From an admin of the organisation (its Hosts section). It works once.">
            <input className="mono" value={token} onChange={(e) => setToken(e.target.value)} autoComplete="off" spellCheck={false} />
          </Field>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? "Joining…" : "Join"}
          </button>
          <button type="button" onClick={() => setOpen(false)}>
            Cancel
          </button>
        </form>
      )}
    </div>
  );
}
