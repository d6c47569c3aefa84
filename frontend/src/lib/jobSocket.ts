// The job's live socket /ws/jobs/{id}/: status changes, log chunks with byte offsets, usage
// and cost so far. Reconnects with jittered exponential backoff; after every (re)connect the
// caller refetches the job and catches the log up by offset, so nothing sent while the socket
// was down is lost (the socket is only a doorbell; the REST API is the truth).

export type SocketState = "connecting" | "open" | "reconnecting" | "closed";

export interface StatusMessage {
  kind: "status";
  status: string;
  reason: string;
  attempt?: number;
  at?: string;
  raw: Record<string, unknown>;
}
export interface LogMessage {
  kind: "log";
  offset: number;
  data: string;
  attempt?: number;
  next_offset?: number;
}
export interface UsageMessage {
  kind: "usage";
  wall_seconds?: number;
  cpu_seconds?: number;
  memory_current_mb?: number;
  memory_peak_mb?: number;
  gpu_seconds?: number;
  cost_micros?: number;
  at: number;
}
export type JobMessage = StatusMessage | LogMessage | UsageMessage;

const num = (value: unknown): number | undefined => (typeof value === "number" ? value : undefined);

/** Accepts `{type, ...fields}` and the protocol's envelope `{type, id, data: {...}}`. */
export function parseJobMessage(raw: string): JobMessage[] {
  let message: unknown;
  try {
    message = JSON.parse(raw);
  } catch {
    return [];
  }
  if (!message || typeof message !== "object") return [];
  const outer = message as Record<string, unknown>;
  const body =
    outer.data && typeof outer.data === "object" && !Array.isArray(outer.data)
      ? { ...outer, ...(outer.data as Record<string, unknown>) }
      : outer;
  const type = String(outer.type ?? "").replace(/^job\./, "");
  const out: JobMessage[] = [];
  if (type === "log" && typeof body.offset === "number") {
    out.push({
      kind: "log",
      offset: body.offset,
      data: String(body.data ?? body.text ?? ""),
      attempt: num(body.attempt),
      next_offset: num(body.next_offset),
    });
  }
  if (type === "status" || type === "state" || type === "finished" || type === "started") {
    const status = String(body.status ?? (type === "started" ? "running" : ""));
    if (status) {
      out.push({
        kind: "status",
        status,
        reason: String(body.status_reason ?? body.reason ?? ""),
        attempt: num(body.attempt),
        at: typeof body.at === "string" ? body.at : undefined,
        raw: body,
      });
    }
  }
  if (type === "usage" || type === "cost" || (type === "status" && typeof body.cost_micros === "number")) {
    const usage = (body.usage && typeof body.usage === "object" ? body.usage : body) as Record<string, unknown>;
    out.push({
      kind: "usage",
      wall_seconds: num(usage.wall_seconds),
      cpu_seconds: num(usage.cpu_seconds),
      memory_current_mb: num(usage.memory_current_mb),
      memory_peak_mb: num(usage.memory_peak_mb),
      gpu_seconds: num(usage.gpu_seconds),
      cost_micros: num(body.cost_micros) ?? num(body.cost_so_far_micros) ?? num(usage.cost_micros),
      at: Date.now(),
    });
  }
  return out;
}

/** The socket's URL on this page's host: `path` is "/ws/jobs/42/". */
export function wsUrl(path: string): string {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

export function socketUrl(jobId: number): string {
  return wsUrl(`/ws/jobs/${jobId}/`);
}

export interface LiveSocketOptions<M> {
  onMessage: (message: M) => void;
  onOpen: () => void;
  onState: (state: SocketState, retryInMs?: number) => void;
  makeSocket?: (url: string) => WebSocket;
  /** Asked when the socket closes; false (e.g. the job has ended) stops reconnecting. */
  shouldReconnect?: () => boolean;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export type JobSocketOptions = LiveSocketOptions<JobMessage>;

/**
 * Opens the socket at `path` and keeps it open until `close()` is called: after a drop it
 * reconnects with jittered exponential backoff. `parse` turns a text frame into messages.
 */
export function liveSocketOpen<M>(path: string, parse: (raw: string) => M[], options: LiveSocketOptions<M>): { close: () => void } {
  const make = options.makeSocket ?? ((url: string) => new WebSocket(url));
  const base = options.baseDelayMs ?? 1000;
  const max = options.maxDelayMs ?? 30000;
  let failures = 0;
  let socket: WebSocket | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;

  const connect = () => {
    options.onState(failures ? "reconnecting" : "connecting");
    socket = make(wsUrl(path));
    socket.onopen = () => {
      failures = 0;
      options.onState("open");
      options.onOpen();
    };
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== "string") return;
      parse(event.data).forEach(options.onMessage);
    };
    socket.onclose = (event: CloseEvent) => {
      socket = null;
      // 4401/4403/4404: not logged in, not this user's, or no such thing — retrying cannot help.
      const wanted = options.shouldReconnect?.() ?? true;
      if (stopped || !wanted || event.code === 4403 || event.code === 4404 || event.code === 4401) {
        options.onState("closed");
        return;
      }
      failures += 1;
      const delay = Math.min(max, base * 2 ** (failures - 1)) * (0.5 + Math.random() / 2);
      options.onState("reconnecting", delay);
      timer = setTimeout(connect, delay);
    };
  };
  connect();
  return {
    close() {
      stopped = true;
      if (timer) clearTimeout(timer);
      socket?.close(1000);
      options.onState("closed");
    },
  };
}

/** The job's socket, /ws/jobs/{id}/. */
export function jobSocketOpen(jobId: number, options: JobSocketOptions): { close: () => void } {
  return liveSocketOpen(`/ws/jobs/${jobId}/`, parseJobMessage, options);
}
