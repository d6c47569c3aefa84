import { useMemo } from "react";
import { Link, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import type { HostFilters } from "../api/types";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Loading } from "../components/Progress";
import { HostStatusBadge } from "../components/StatusBadge";
import { useDebounced, useLoad } from "../lib/hooks";
import { IsolationWarning } from "../components/IsolationWarning";
import { cursorOf, gpuText, jobDiskMb, matchText, ratesText, reliabilityText } from "../lib/hosts";
import { creditsToMicros, formatMemory } from "../lib/money";

const ORDERINGS: [string, string][] = [
  ["price", "Price, lowest first"],
  ["-price", "Price, highest first"],
  ["-reliability", "Most reliable first"],
  ["-cpus", "Most cores first"],
  ["-memory", "Most memory first"],
  ["gpu_price", "GPU price, lowest first"],
  ["-last_seen", "Seen most recently first"],
];

/** The URL holds the filters (shareable, back button works); the API gets them translated. */
function filtersFrom(params: URLSearchParams): HostFilters {
  const filters: HostFilters = {};
  const text = (key: string) => params.get(key) ?? "";
  if (text("arch")) filters.arch = text("arch");
  if (text("os")) filters.os = text("os");
  const minCpus = Number(text("min_cpus"));
  if (Number.isInteger(minCpus) && minCpus > 0) filters.min_cpus = minCpus;
  const memoryGb = Number(text("min_memory_gb"));
  if (memoryGb > 0) filters.min_memory_mb = Math.round(memoryGb * 1024);
  const diskGb = Number(text("min_disk_gb"));
  if (diskGb > 0) filters.min_disk_mb = Math.round(diskGb * 1024);
  if (text("gpu") === "1") filters.gpu = true;
  const maxPrice = text("max_price") ? creditsToMicros(text("max_price")) : null;
  if (maxPrice !== null) filters.max_price_micros = maxPrice;
  if (text("online") !== "0") filters.online = true;
  if (text("accepting") === "1") filters.accepting = true;
  filters.ordering = text("ordering") || "price";
  if (text("cursor")) filters.cursor = text("cursor");
  return filters;
}

export function CatalogPage() {
  const [params, setParams] = useSearchParams();
  const debouncedParams = useDebounced(params.toString(), 300);
  const filters = useMemo(() => filtersFrom(new URLSearchParams(debouncedParams)), [debouncedParams]);
  const hosts = useLoad(() => api.hosts(filters), [JSON.stringify(filters)]);

  // The URL holds the page's cursor too (reload and back work); a new filter starts again.
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    if (key !== "cursor") next.delete("cursor");
    next.delete("page"); // numbered pages are gone; an old bookmark starts at the first page
    setParams(next, { replace: key !== "cursor" });
  };
  const fieldError = (name: string) => {
    const err = hosts.error as { fields?: Record<string, string> } | null;
    return err?.fields?.[name];
  };

  return (
    <section>
      <h1>Catalog</h1>
      <form className="filters" aria-label="Filter machines" onSubmit={(e) => e.preventDefault()}>
        <Field label="Architecture" error={fieldError("arch")}>
          <select value={params.get("arch") ?? ""} onChange={(e) => set("arch", e.target.value)}>
            <option value="">Any</option>
            <option value="x86_64">x86_64</option>
            <option value="aarch64">aarch64 (ARM)</option>
          </select>
        </Field>
        <Field label="Operating system" error={fieldError("os")}>
          <select value={params.get("os") ?? ""} onChange={(e) => set("os", e.target.value)}>
            <option value="">Any</option>
            <option value="linux">Linux</option>
            <option value="darwin">macOS</option>
            <option value="windows">Windows</option>
          </select>
        </Field>
        <Field label="Min. CPU cores" error={fieldError("min_cpus")}>
          <input type="number" min={1} inputMode="numeric" value={params.get("min_cpus") ?? ""} onChange={(e) => set("min_cpus", e.target.value)} />
        </Field>
        <Field label="Min. memory (GB)" error={fieldError("min_memory_mb")}>
          <input type="number" min={0} step="0.5" inputMode="decimal" value={params.get("min_memory_gb") ?? ""} onChange={(e) => set("min_memory_gb", e.target.value)} />
        </Field>
        <Field label="Min. disk per job (GB)" error={fieldError("min_disk_mb")} hint="/work, /outputs, /tmp and the inputs together.">
          <input type="number" min={0} step="1" inputMode="decimal" value={params.get("min_disk_gb") ?? ""} onChange={(e) => set("min_disk_gb", e.target.value)} />
        </Field>
        <Field label="Max. price per core-hour (cr)" error={fieldError("max_price_micros")}>
          <input inputMode="decimal" value={params.get("max_price") ?? ""} onChange={(e) => set("max_price", e.target.value)} />
        </Field>
        <div className="field checkbox">
          <label>
            <input type="checkbox" checked={params.get("gpu") === "1"} onChange={(e) => set("gpu", e.target.checked ? "1" : "")} /> Has a GPU
          </label>
          <label>
            <input type="checkbox" checked={params.get("online") !== "0"} onChange={(e) => set("online", e.target.checked ? "" : "0")} /> Online only
          </label>
          <label>
            <input type="checkbox" checked={params.get("accepting") === "1"} onChange={(e) => set("accepting", e.target.checked ? "1" : "")} /> Taking work now
          </label>
        </div>
        <Field label="Sort by" error={fieldError("ordering")}>
          <select value={params.get("ordering") ?? "price"} onChange={(e) => set("ordering", e.target.value)}>
            {ORDERINGS.map(([value, label]) => (
              <option key={value} value={value}>{label}</option>
            ))}
          </select>
        </Field>
      </form>

      {hosts.error !== null && !fieldError("arch") && <ErrorBanner error={hosts.error} />}
      {hosts.loading && !hosts.data && <Loading />}
      {hosts.data && (
        <>
          <p role="status" aria-live="polite">
            {matchText(hosts.data.count, hosts.data.count_is_capped)}
          </p>
          <div className="table-wrap">
            <table className="hosts-table stack">
              <caption className="visually-hidden">Machines in the catalog</caption>
              <thead>
                <tr>
                  <th scope="col">Machine</th>
                  <th scope="col">Status</th>
                  <th scope="col">Platform</th>
                  <th scope="col">Cores</th>
                  <th scope="col">Memory</th>
                  <th scope="col">Disk per job</th>
                  <th scope="col">GPU</th>
                  <th scope="col">Rates</th>
                  <th scope="col">Reliability</th>
                  <th scope="col"><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {hosts.data.results.map((host) => (
                  <tr key={host.id}>
                    <th scope="row">
                      <Link to={`/hosts/${host.id}`}>{host.name || `Host #${host.id}`}</Link> <IsolationWarning isolation={host.isolation} compact />
                    </th>
                    <td data-label="Status"><HostStatusBadge status={host.status} /></td>
                    <td data-label="Platform">{host.os} / {host.arch}</td>
                    <td data-label="Cores">{host.cpus}</td>
                    <td data-label="Memory">{formatMemory(host.memory_mb)}</td>
                    <td data-label="Disk per job">{formatMemory(jobDiskMb(host))}</td>
                    <td data-label="GPU">{gpuText(host)}</td>
                    <td className="small" data-label="Rates">{ratesText(host)}</td>
                    <td className="small" data-label="Reliability">{reliabilityText(host)}</td>
                    <td className="action"><Link to={`/run?host=${host.id}`}>Run here</Link></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="Pages">
            <button type="button" disabled={!hosts.data.previous} onClick={() => hosts.data?.previous && set("cursor", cursorOf(hosts.data.previous))}>Previous</button>
            <button type="button" disabled={!hosts.data.next} onClick={() => hosts.data?.next && set("cursor", cursorOf(hosts.data.next))}>Next</button>
          </nav>
        </>
      )}
    </section>
  );
}
