import { useState, type FormEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import { ApiError } from "../api/errors";
import { pools, type HostToken, type OrgRole, type PoolMember } from "../api/pools";
import type { Organisation } from "../api/pools";
import { useAuth } from "../auth";
import { CopyButton } from "../components/CopyButton";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Loading } from "../components/Progress";
import { HostStatusBadge } from "../components/StatusBadge";
import { PoolSettingsSection } from "../components/pool/PoolSettingsForm";
import { OrgWalletSection } from "../components/pool/OrgWallet";
import { AuditSection, ReportsSection } from "../components/pool/OrgReports";
import { ReleasesSection } from "../components/pool/Releases";
import { pageConfig } from "../config";
import { useFormErrors } from "../lib/forms";
import { useLoad } from "../lib/hooks";
import { creditsToMicros, formatCredits, formatDateTime, formatMemory, microsToInput } from "../lib/money";
import { ROLE_WORDS } from "./Organisations";

/** The cap as typed: "" is no cap of its own (null); else credits. undefined: not an amount. */
export function capFromInput(text: string): number | null | undefined {
  if (!text.trim()) return null;
  const micros = creditsToMicros(text);
  return micros === null ? undefined : micros;
}

function capText(cap: number | null | undefined): string {
  return cap === null || cap === undefined ? "No cap of their own" : `${formatCredits(cap)} a month`;
}

function MemberCard({
  orgId,
  member,
  isAdmin,
  isSelf,
  onChanged,
}: {
  orgId: number;
  member: PoolMember;
  isAdmin: boolean;
  isSelf: boolean;
  onChanged: () => void;
}) {
  const errors = useFormErrors(["role", "is_steward", "monthly_cap_micros"]);
  const [role, setRole] = useState<OrgRole>(member.role);
  const [steward, setSteward] = useState(Boolean(member.is_steward));
  const [cap, setCap] = useState(member.monthly_cap_micros != null ? microsToInput(member.monthly_cap_micros) : "");
  const [capProblem, setCapProblem] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const [confirmRemove, setConfirmRemove] = useState(false);
  const [removeError, setRemoveError] = useState<unknown>(null);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    setSaved(false);
    const capMicros = capFromInput(cap);
    if (capMicros === undefined) {
      setCapProblem("An amount in credits, such as 250 or 12.50; leave it empty for no cap of their own.");
      return;
    }
    setCapProblem(undefined);
    const patch: { role?: OrgRole; is_steward?: boolean; monthly_cap_micros?: number | null } = {};
    if (role !== member.role) patch.role = role;
    if (steward !== Boolean(member.is_steward)) patch.is_steward = steward;
    if (capMicros !== (member.monthly_cap_micros ?? null)) patch.monthly_cap_micros = capMicros;
    if (!Object.keys(patch).length) return;
    setBusy(true);
    try {
      await pools.memberUpdate(orgId, member.username, patch);
      setSaved(true);
      onChanged();
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    setRemoveError(null);
    setConfirmRemove(false);
    try {
      await api.memberRemove(orgId, member.username);
      onChanged();
    } catch (err) {
      setRemoveError(err);
    }
  };

  return (
    <li data-testid={`member-${member.username}`}>
      <div className="host-line">
        <strong>{member.username}</strong>
        {isSelf && <span className="muted"> (you)</span>} <span className="badge badge-idle">{ROLE_WORDS[member.role] ?? member.role}</span>
        {member.is_steward && <span className="badge badge-ok">Data steward</span>}
        <span className="muted small">
          {capText(member.monthly_cap_micros)} · member since {formatDateTime(member.created_at)}
        </span>
      </div>
      {isAdmin && (
        <form className="inline-form" onSubmit={(e) => void save(e)} noValidate aria-label={`Settings of ${member.username}`}>
          <ErrorBanner message={errors.banner} details={errors.otherFields} />
          <Field label="Role" error={errors.fieldError("role")}>
            <select value={role} onChange={(e) => setRole(e.target.value as OrgRole)}>
              <option value="member">Member</option>
              <option value="admin">Admin</option>
            </select>
          </Field>
          <div className="field checkbox">
            <label>
              <input type="checkbox" checked={steward} onChange={(e) => setSteward(e.target.checked)} /> Data steward (decides the release of the
              pool&apos;s outputs)
            </label>
            {errors.fieldError("is_steward") && <small className="field-error" role="alert">{errors.fieldError("is_steward")}</small>}
          </div>
          <Field
            label="Monthly cap (credits)"
            error={errors.fieldError("monthly_cap_micros") ?? capProblem}
            hint="What they may spend of the organisation's wallet per calendar month (UTC); empty: no cap of their own."
          >
            <input inputMode="decimal" value={cap} onChange={(e) => setCap(e.target.value)} placeholder="no cap" />
          </Field>
          <button type="submit" disabled={busy}>
            {busy ? "Saving…" : "Save"}
          </button>
          {saved && <span role="status" className="small">Saved.</span>}
        </form>
      )}
      {(isAdmin || isSelf) && !confirmRemove && (
        <button type="button" className="link-button" onClick={() => setConfirmRemove(true)}>
          {isSelf ? "Leave the organisation" : `Remove ${member.username}`}
        </button>
      )}
      {confirmRemove && (
        <div className="confirm" role="group" aria-label="Confirm">
          <p>
            {isSelf
              ? "Leave this organisation? You can no longer run jobs in its pool or see its machines."
              : `Remove ${member.username}? They can no longer run jobs in the pool or spend from its wallet.`}
          </p>
          <button type="button" className="danger" onClick={() => void remove()}>
            {isSelf ? "Yes, leave" : "Yes, remove"}
          </button>{" "}
          <button type="button" onClick={() => setConfirmRemove(false)}>
            Keep
          </button>
        </div>
      )}
      <ErrorBanner error={removeError} />
    </li>
  );
}

function AddMember({ orgId, onAdded }: { orgId: number; onAdded: () => void }) {
  const errors = useFormErrors(["username", "role"]);
  const [username, setUsername] = useState("");
  const [role, setRole] = useState<OrgRole>("member");
  const [local, setLocal] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    if (!username.trim()) {
      setLocal("Give the person's username.");
      return;
    }
    setLocal(undefined);
    setBusy(true);
    try {
      await api.memberAdd(orgId, username.trim(), role);
      setUsername("");
      onAdded();
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="inline-form" onSubmit={(e) => void submit(e)} noValidate aria-labelledby="add-member-h">
      <h3 id="add-member-h" className="visually-hidden">
        Add a member
      </h3>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <Field label="Username" error={errors.fieldError("username") ?? local}>
        <input value={username} onChange={(e) => setUsername(e.target.value)} autoComplete="off" />
      </Field>
      <Field label="Role" error={errors.fieldError("role")}>
        <select value={role} onChange={(e) => setRole(e.target.value as OrgRole)}>
          <option value="member">Member</option>
          <option value="admin">Admin</option>
        </select>
      </Field>
      <button type="submit" className="primary" disabled={busy}>
        {busy ? "Adding…" : "Add member"}
      </button>
    </form>
  );
}

function MembersSection({ orgId, isAdmin, members, onChanged }: { orgId: number; isAdmin: boolean; members: ReturnType<typeof useMembers>; onChanged: () => void }) {
  const { user } = useAuth();
  return (
    <section aria-labelledby="members-h">
      <h2 id="members-h">Members</h2>
      {members.error !== null && <ErrorBanner error={members.error} />}
      {!members.data && members.loading && <Loading />}
      {members.data && (
        <ul className="host-list" data-testid="members">
          {members.data.results.map((m) => (
            <MemberCard
              key={`${m.username}-${m.role}-${String(m.is_steward)}-${String(m.monthly_cap_micros)}`}
              orgId={orgId}
              member={m}
              isAdmin={isAdmin}
              isSelf={m.username === user?.username}
              onChanged={onChanged}
            />
          ))}
        </ul>
      )}
      {isAdmin && <AddMember orgId={orgId} onAdded={onChanged} />}
    </section>
  );
}

/** How the host's owner joins a machine with the token: the Hosting page, or the API. */
export function joinCommand(token: string): string {
  const base = pageConfig().public_url || (typeof window !== "undefined" ? window.location.origin : "");
  return `curl -X POST ${base}/api/v1/my/hosts/HOST_ID/pool/ -H "Authorization: Token YOUR_API_TOKEN" -H "Content-Type: application/json" -d '{"token": "${token}"}'`;
}

function HostTokenPanel({ orgId }: { orgId: number }) {
  const [token, setToken] = useState<HostToken | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const create = async () => {
    setError(null);
    setBusy(true);
    try {
      setToken(await pools.hostTokenCreate(orgId));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div>
      <button type="button" className="primary" disabled={busy} onClick={() => void create()}>
        {busy ? "Creating…" : token ? "Create another host token" : "Create a host token"}
      </button>
      <ErrorBanner error={error} />
      {token && (
        <div className="enrollment" data-testid="host-token">
          <p>
            This token joins one machine to the pool. It is shown only now
            {token.expires_at ? <> and expires {formatDateTime(token.expires_at)}</> : null}: give it to the machine&apos;s owner.
          </p>
          <pre className="command" tabIndex={0} aria-label="Host token">
            {token.token}
          </pre>
          <CopyButton text={token.token} label="Copy token" />
          <p className="small">
            The owner opens <strong>Hosting</strong>, presses <strong>Join a pool</strong> on the machine and pastes the token; or, with an API
            token, runs (HOST_ID is the machine&apos;s number):
          </p>
          <pre className="command" tabIndex={0} aria-label="Join command">
            {joinCommand(token.token)}
          </pre>
          <CopyButton text={joinCommand(token.token)} label="Copy command" />
        </div>
      )}
    </div>
  );
}

function HostsSection({ orgId, isAdmin }: { orgId: number; isAdmin: boolean }) {
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const hosts = useLoad(() => pools.hosts(orgId, cursor), [orgId, cursor]);
  const nextCursor = hosts.data?.next ? (new URL(hosts.data.next, "http://x").searchParams.get("cursor") ?? null) : null;
  return (
    <section aria-labelledby="hosts-h">
      <h2 id="hosts-h">Hosts</h2>
      <p className="small">The pool&apos;s machines: only members see them, and jobs run in the pool go only to them.</p>
      {isAdmin && <HostTokenPanel orgId={orgId} />}
      {hosts.error !== null && <ErrorBanner error={hosts.error} />}
      {!hosts.data && hosts.loading && <Loading />}
      {hosts.data && hosts.data.results.length === 0 && <p>No machines in the pool yet.{isAdmin ? " Create a host token for a machine's owner." : ""}</p>}
      {hosts.data && hosts.data.results.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="pool-hosts">
            <caption className="visually-hidden">The pool&apos;s machines</caption>
            <thead>
              <tr>
                <th scope="col">Machine</th>
                <th scope="col">Status</th>
                <th scope="col">Size</th>
                <th scope="col" className="num">Per core-hour</th>
              </tr>
            </thead>
            <tbody>
              {hosts.data.results.map((h) => (
                <tr key={h.id}>
                  <td data-label="Machine">
                    <Link to={`/hosts/${h.id}`}>{h.name || `Host #${h.id}`}</Link>
                  </td>
                  <td data-label="Status">
                    <HostStatusBadge status={h.status} />
                  </td>
                  <td data-label="Size">
                    {h.cpus} cores · {formatMemory(h.memory_mb)}
                    {h.gpus.length ? ` · ${h.gpus.length} GPU` : ""}
                  </td>
                  <td data-label="Per core-hour" className="num">
                    {formatCredits(h.cpu_core_hour_micros)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {(cursors.length > 0 || nextCursor) && (
        <nav className="pager" aria-label="Pool machines pages">
          <button type="button" disabled={!cursors.length} onClick={() => setCursors((c) => c.slice(0, -1))}>
            Previous
          </button>
          <button type="button" disabled={!nextCursor} onClick={() => nextCursor && setCursors((c) => [...c, nextCursor])}>
            Next
          </button>
        </nav>
      )}
    </section>
  );
}

function useMembers(orgId: number, reloadKey: number) {
  return useLoad(() => api.members(orgId), [orgId, reloadKey]);
}

interface Tab {
  key: string;
  label: string;
}

/** The sections a member sees, by role: every member reads the members, the pool's settings,
 * its machines and their own month; admins see the wallet, reports and audit; stewards (and
 * admins) the releases. */
export function organisationTabs(org: Pick<Organisation, "role">, isSteward: boolean): Tab[] {
  const admin = org.role === "admin";
  return [
    { key: "members", label: "Members" },
    { key: "pool", label: "Pool settings" },
    { key: "hosts", label: "Hosts" },
    { key: "wallet", label: "Wallet" },
    ...(admin ? [{ key: "reports", label: "Reports" }, { key: "audit", label: "Audit" }] : []),
    ...(admin || isSteward ? [{ key: "releases", label: "Releases" }] : []),
  ];
}

export function OrganisationPage() {
  const id = Number(useParams().id);
  const { user } = useAuth();
  const [params] = useSearchParams();
  const [reloadKey, setReloadKey] = useState(0);
  const org = useLoad(() => api.organisation(id), [id, reloadKey]);
  const members = useMembers(id, reloadKey);
  const me = members.data?.results.find((m) => m.username === user?.username);
  const orgData: Organisation | undefined = org.data;
  const isSteward = Boolean(orgData?.is_steward ?? me?.is_steward);

  if (org.error !== null)
    return (
      <section>
        <h1>Organisation</h1>
        <ErrorBanner error={org.error} />
        {org.error instanceof ApiError && org.error.status === 404 && (
          <p>
            <Link to="/organisations">Your organisations</Link>
          </p>
        )}
      </section>
    );
  if (!org.data) return <Loading />;
  const isAdmin = org.data.role === "admin";
  const tabs = organisationTabs(org.data, isSteward);
  const tab = tabs.find((t) => t.key === params.get("tab"))?.key ?? "members";
  const bump = () => setReloadKey((k) => k + 1);

  return (
    <section>
      <h1>
        {org.data.name} <span className="muted">· {ROLE_WORDS[org.data.role] ?? org.data.role}{isSteward ? ", data steward" : ""}</span>
      </h1>
      <p className="small">
        {isAdmin
          ? "As an admin you set the pool's rules, the members' caps and who the data stewards are. "
          : "Jobs you run in this pool are paid from the organisation's wallet, within your monthly cap. "}
        <Link to="/organisations">All organisations</Link> · <Link to={`/run?pool=${id}`}>Run a job in this pool</Link>
      </p>
      <nav aria-label="Organisation sections">
        <ul className="tabs">
          {tabs.map((t) => (
            <li key={t.key}>
              <Link to={`?tab=${t.key}`} aria-current={t.key === tab ? "page" : undefined}>
                {t.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      {tab === "members" && <MembersSection orgId={id} isAdmin={isAdmin} members={members} onChanged={bump} />}
      {tab === "pool" && <PoolSettingsSection orgId={id} isAdmin={isAdmin} />}
      {tab === "hosts" && <HostsSection orgId={id} isAdmin={isAdmin} />}
      {tab === "wallet" && <OrgWalletSection orgId={id} isAdmin={isAdmin} />}
      {tab === "reports" && <ReportsSection orgId={id} />}
      {tab === "audit" && <AuditSection orgId={id} />}
      {tab === "releases" && <ReleasesSection orgId={id} canDecide={isSteward} />}
    </section>
  );
}
