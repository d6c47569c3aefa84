import { Link, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import { ErrorBanner } from "../components/ErrorBanner";
import { Loading } from "../components/Progress";
import { StatusBadge } from "../components/StatusBadge";
import { useInterval, useLoad } from "../lib/hooks";
import { isTerminal } from "../lib/jobStatus";
import { formatCredits, formatDateTime } from "../lib/money";

export function JobsPage() {
  const [params, setParams] = useSearchParams();
  const page = Number(params.get("page") ?? "1") || 1;
  const jobs = useLoad(() => api.jobs(page), [page]);
  const anyActive = jobs.data?.results.some((j) => !isTerminal(j.status)) ?? false;
  useInterval(jobs.reload, anyActive ? 5000 : null);

  return (
    <section>
      <h1>Jobs</h1>
      <p>
        <Link to="/run" className="button primary">Run a job</Link>
      </p>
      {jobs.error !== null && <ErrorBanner error={jobs.error} />}
      {!jobs.data && jobs.loading && <Loading />}
      {jobs.data && jobs.data.results.length === 0 && <p>No jobs yet.</p>}
      {jobs.data && jobs.data.results.length > 0 && (
        <>
          <div className="table-wrap">
            <table>
              <caption className="visually-hidden">Your jobs, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">Status</th>
                  <th scope="col">Submitted</th>
                  <th scope="col" className="num">Cost</th>
                  <th scope="col" className="num">Cap</th>
                </tr>
              </thead>
              <tbody>
                {jobs.data.results.map((job) => (
                  <tr key={job.id}>
                    <th scope="row">
                      <Link to={`/jobs/${job.id}`}>#{job.id} {job.name || job.entrypoint || ""}</Link>
                    </th>
                    <td>
                      <StatusBadge status={job.status} />
                      {job.status_reason && <div className="small muted">{job.status_reason}</div>}
                    </td>
                    <td>{formatDateTime(job.created_at)}</td>
                    <td className="num">{formatCredits(job.cost_micros)}</td>
                    <td className="num">{formatCredits(job.max_cost_micros)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="Pages">
            <button type="button" disabled={!jobs.data.previous} onClick={() => setParams({ page: String(page - 1) })}>Previous</button>
            <span>Page {page}</span>
            <button type="button" disabled={!jobs.data.next} onClick={() => setParams({ page: String(page + 1) })}>Next</button>
          </nav>
        </>
      )}
    </section>
  );
}
