import { useState, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { api } from "../api/endpoints";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Loading } from "../components/Progress";
import { useFormErrors } from "../lib/forms";
import { useLoad } from "../lib/hooks";
import { formatDateTime } from "../lib/money";

export const ROLE_WORDS: Record<string, string> = { admin: "Admin", member: "Member" };

function CreateOrganisation() {
  const navigate = useNavigate();
  const errors = useFormErrors(["name"]);
  const [name, setName] = useState("");
  const [local, setLocal] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    if (!name.trim()) {
      setLocal("Give the organisation a name.");
      return;
    }
    setLocal(undefined);
    setBusy(true);
    try {
      const created = await api.organisationCreate(name.trim());
      navigate(`/organisations/${created.id}`);
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="org-create-h">
      <h2 id="org-create-h">Create an organisation</h2>
      <p className="small">You become its admin: add members, set up its pool of machines and its wallet.</p>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <form className="inline-form" onSubmit={(e) => void submit(e)} noValidate>
        <Field label="Organisation name" error={errors.fieldError("name") ?? local}>
          <input maxLength={120} value={name} onChange={(e) => setName(e.target.value)} placeholder="City Hospital Research" />
        </Field>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Creating…" : "Create"}
        </button>
      </form>
    </section>
  );
}

export function OrganisationsPage() {
  const orgs = useLoad(() => api.organisations(), []);
  return (
    <section>
      <h1>Organisations</h1>
      <p>
        An organisation&apos;s machines form its private pool: jobs run in the pool only on its machines, are paid from its wallet, and
        its data can stay inside the institution.
      </p>
      <section aria-labelledby="orgs-h">
        <h2 id="orgs-h">Yours</h2>
        {orgs.error !== null && <ErrorBanner error={orgs.error} />}
        {!orgs.data && orgs.loading && <Loading />}
        {orgs.data && orgs.data.results.length === 0 && <p>You are not in any organisation yet.</p>}
        {orgs.data && orgs.data.results.length > 0 && (
          <div className="table-wrap">
            <table className="stack" data-testid="organisations">
              <caption className="visually-hidden">Your organisations and your role in each</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Your role</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {orgs.data.results.map((o) => (
                  <tr key={o.id}>
                    <td data-label="Name">
                      <Link to={`/organisations/${o.id}`}>{o.name}</Link>
                    </td>
                    <td data-label="Your role">{ROLE_WORDS[o.role] ?? o.role}</td>
                    <td data-label="Created">{formatDateTime(o.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <CreateOrganisation />
    </section>
  );
}
