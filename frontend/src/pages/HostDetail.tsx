import { Link, useParams } from "react-router";
import { api } from "../api/endpoints";
import { ErrorBanner } from "../components/ErrorBanner";
import { Loading } from "../components/Progress";
import { HostStatusBadge } from "../components/StatusBadge";
import { useInterval, useLoad } from "../lib/hooks";
import { IsolationWarning } from "../components/IsolationWarning";
import { availabilityText, gpuText, reliabilityOf } from "../lib/hosts";
import { formatCredits, formatDateTime, formatDuration, formatMemory, formatPercent } from "../lib/money";

export function HostPage() {
  const id = Number(useParams().id);
  const host = useLoad(() => api.host(id), [id]);
  useInterval(host.reload, 15000);
  if (host.error && !host.data) return <ErrorBanner error={host.error} />;
  if (!host.data) return <Loading />;
  const h = host.data;
  const rel = reliabilityOf(h);
  return (
    <section>
      <h1>{h.name || `Host #${h.id}`}</h1>
      <p>
        <HostStatusBadge status={h.status} /> {h.is_accepting_jobs === false && h.status !== "offline" && <span className="badge badge-idle">not taking work now</span>}{" "}
        <span className="muted small">last seen {formatDateTime(h.last_seen_at)}</span>
      </p>
      {h.isolation === "none" && (
        <p>
          <IsolationWarning isolation={h.isolation} />
        </p>
      )}
      {h.is_ready === false && h.status !== "offline" && <p className="muted">The machine's agent says it can't run jobs right now.</p>}
      <p>
        <Link className="button primary" to={`/run?host=${h.id}`}>Run a job on this machine</Link>
      </p>
      <div className="grid-2">
        <section aria-labelledby="specs-h">
          <h2 id="specs-h">Specs</h2>
          <dl className="facts">
            <dt>CPU</dt><dd>{h.cpu_model || "—"}</dd>
            <dt>Cores</dt><dd>{h.cpus}</dd>
            <dt>Memory</dt><dd>{formatMemory(h.memory_mb)}</dd>
            <dt>Free disk</dt><dd>{formatMemory(h.disk_free_mb)}</dd>
            <dt>Platform</dt><dd>{h.os} {h.os_version} / {h.arch}</dd>
            <dt>GPU</dt><dd>{gpuText(h)}</dd>
            <dt>Docker</dt><dd>{h.docker_available ? "yes" : "no"}</dd>
            <dt>Agent</dt><dd>{h.agent_version || "—"}</dd>
          </dl>
        </section>
        <section aria-labelledby="rates-h">
          <h2 id="rates-h">Rates</h2>
          <dl className="facts">
            <dt>CPU time</dt><dd>{formatCredits(h.cpu_core_hour_micros)} per core-hour used</dd>
            <dt>Memory</dt><dd>{formatCredits(h.memory_gb_hour_micros)} per GB-hour reserved</dd>
            <dt>GPU</dt><dd>{formatCredits(h.gpu_hour_micros)} per GPU-hour reserved</dd>
          </dl>
          <h2>Largest job</h2>
          <dl className="facts">
            <dt>Cores</dt><dd>{h.max_job_cpus || h.cpus}</dd>
            <dt>Memory</dt><dd>{formatMemory(h.max_job_memory_mb || h.memory_mb)}</dd>
            <dt>GPUs</dt><dd>{h.max_job_gpus ?? h.gpu_count ?? 0}</dd>
            <dt>Timeout</dt><dd>{formatDuration(h.max_job_timeout_seconds)}</dd>
            <dt>Network in jobs</dt><dd>{h.allow_network ? "allowed" : "none"}</dd>
          </dl>
        </section>
        <section aria-labelledby="rel-h">
          <h2 id="rel-h">Reliability</h2>
          <dl className="facts">
            <dt>Reliability score</dt><dd>{formatPercent(rel.score)}</dd>
            <dt>Uptime</dt><dd>{formatPercent(rel.uptime)}</dd>
            <dt>Jobs finished</dt><dd>{rel.finished ?? "—"}</dd>
            <dt>Jobs lost</dt><dd>{rel.lost ?? "—"}</dd>
          </dl>
        </section>
        <section aria-labelledby="avail-h">
          <h2 id="avail-h">Availability</h2>
          <p>{availabilityText(h)}</p>
        </section>
      </div>
    </section>
  );
}
