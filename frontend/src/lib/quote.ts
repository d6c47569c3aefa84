import type { Quote } from "../api/types";

export interface QuoteView {
  /** Why the chosen host does not fit, if it does not. */
  misfit: string | null;
  /** The most the job can cost: the whole timeout on the best host. */
  estimateMicros: number | null;
  hourlyMicros: number | null;
  /** One minute at the best host's rates: the smallest cap it accepts. */
  minimumCapMicros: number | null;
  hosts: { id: number; name: string; estimateMicros: number; hourlyMicros: number }[];
}

export function quoteView(q: Quote): QuoteView {
  return {
    misfit: q.host_misfit || null,
    estimateMicros: q.estimate_micros,
    hourlyMicros: q.per_hour_micros,
    minimumCapMicros: q.minimum_cap_micros,
    hosts: q.hosts.map((h) => ({ id: h.host, name: h.name, estimateMicros: h.estimate_micros, hourlyMicros: h.per_hour_micros })),
  };
}
