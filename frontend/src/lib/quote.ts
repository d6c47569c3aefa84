import type { Quote, QuoteHost } from "../api/types";

export interface QuoteView {
  /** Why the chosen host does not fit, if it does not. */
  misfit: string | null;
  estimateMicros: number | null;
  hourlyMicros: number | null;
  minimumCapMicros: number | null;
  hosts: { id: number | null; name: string; estimateMicros: number | null; hourlyMicros: number | null }[];
}

const num = (v: unknown): number | null => (typeof v === "number" ? v : null);

function hostView(h: QuoteHost | number) {
  if (typeof h === "number") return { id: h, name: `Host #${h}`, estimateMicros: null, hourlyMicros: null };
  const id = num(h.host) ?? num(h.id) ?? num(h.host_id);
  return {
    id,
    name: h.name || (id !== null ? `Host #${id}` : "a host"),
    estimateMicros: num(h.estimate_micros) ?? num(h.estimated_cost_micros) ?? num(h.cost_micros) ?? num(h.max_cost_micros),
    hourlyMicros: num(h.per_hour_micros) ?? num(h.hourly_micros),
  };
}

/** The quote's shape is not pinned by the contract; read the fields it is likely to carry. */
export function quoteView(q: Quote): QuoteView {
  const hosts = (q.hosts ?? []).map(hostView);
  const first = hosts[0];
  return {
    misfit: typeof q.host_misfit === "string" && q.host_misfit ? q.host_misfit : null,
    estimateMicros:
      num(q.estimate_micros) ?? num(q.estimated_cost_micros) ?? num(q.cost_micros) ?? first?.estimateMicros ?? null,
    hourlyMicros: num(q.per_hour_micros) ?? num(q.hourly_micros) ?? first?.hourlyMicros ?? null,
    minimumCapMicros: num(q.minimum_cap_micros) ?? num(q.min_cap_micros),
    hosts,
  };
}
