import { Link, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import type { JobGroup } from "../api/types";
import { ErrorBanner } from "../components/ErrorBanner";
import { Loading } from "../components/Progress";
import { GroupStatusBadge } from "../components/StatusBadge";
import { useInterval, useLoad } from "../lib/hooks";
import { isGroupEnded } from "../lib/jobStatus";
import { formatCredits, formatDateTime } from "../lib/money";
import { progressText } from "./Group";

function GroupRow({ group }: { group: JobGroup }) {
  return (
    <tr>
      <th scope="row">
        <Link to={`/groups/${group.id}`}>
          #{group.id} {group.name || group.entrypoint}
        </Link>
      </th>
      <td>
        <GroupStatusBadge status={group.status} counts={group.counts} />
      </td>
      <td>{progressText(group.counts, group.count).text}</td>
      <td>{formatDateTime(group.created_at)}</td>
      <td className="num">{formatCredits(group.cost_micros)}</td>
      <td className="num">{formatCredits(group.max_cost_micros)}</td>
    </tr>
  );
}

/** The user's job groups, newest first; read again every 5 s while one runs. */
export function GroupsPage() {
  const [params, setParams] = useSearchParams();
  const page = Number(params.get("page") ?? "1") || 1;
  const groups = useLoad(() => api.groups(page), [page]);
  const anyRunning = groups.data?.results.some((g) => !isGroupEnded(g.status)) ?? false;
  useInterval(groups.reload, anyRunning ? 5000 : null);

  return (
    <section>
      <h1>Groups</h1>
      <p>
        A group runs one job over many inputs: each task is a job of its own, on whichever machines fit.{" "}
        <Link to="/run?mode=group" className="button primary">
          Run over inputs
        </Link>
      </p>
      {groups.error !== null && <ErrorBanner error={groups.error} />}
      {!groups.data && groups.loading && <Loading />}
      {groups.data && groups.data.results.length === 0 && <p>No groups yet.</p>}
      {groups.data && groups.data.results.length > 0 && (
        <>
          <div className="table-wrap">
            <table>
              <caption className="visually-hidden">Your job groups, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Group</th>
                  <th scope="col">Status</th>
                  <th scope="col">Tasks</th>
                  <th scope="col">Started</th>
                  <th scope="col" className="num">Cost</th>
                  <th scope="col" className="num">Cap</th>
                </tr>
              </thead>
              <tbody>
                {groups.data.results.map((group) => (
                  <GroupRow key={group.id} group={group} />
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="Pages">
            <button type="button" disabled={!groups.data.previous} onClick={() => setParams({ page: String(page - 1) })}>
              Previous
            </button>
            <span>Page {page}</span>
            <button type="button" disabled={!groups.data.next} onClick={() => setParams({ page: String(page + 1) })}>
              Next
            </button>
          </nav>
        </>
      )}
    </section>
  );
}
