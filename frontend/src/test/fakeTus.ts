// A tus 1.0.0 server in memory, as tus-js-client's HttpStack: the real client (HEAD, PATCH,
// retries, progress) runs against it. Uploads are created by the test's POST /uploads/ mock
// (`create`); PATCHes can be held (`hold`) to look at the page mid-upload, and released.
import type { HttpRequest, HttpResponse, HttpStack } from "tus-js-client";

export interface TusCall {
  method: string;
  url: string;
  headers: Record<string, string>;
  bytes: number;
}

interface Stored {
  length: number;
  chunks: Uint8Array[];
  offset: number;
}

class Response implements HttpResponse {
  constructor(
    private readonly status: number,
    private readonly headers: Record<string, string>,
    private readonly body = "",
  ) {}
  getStatus() {
    return this.status;
  }
  getHeader(name: string) {
    return this.headers[name];
  }
  getBody() {
    return this.body;
  }
  getUnderlyingObject() {
    return null;
  }
}

export class FakeTusServer implements HttpStack {
  readonly uploads = new Map<string, Stored>();
  readonly calls: TusCall[] = [];
  /** While true, PATCHes wait (after reporting half their bytes sent) until `release`. */
  holding = false;
  /** An answer to give the next PATCH instead of storing it (a refusal). */
  refuseNext: { status: number; body: unknown } | null = null;
  private waiting: (() => void)[] = [];
  private serial = 0;

  /** Registers an upload as the creation POST would; returns its absolute URL. */
  create(length: number): string {
    const url = `http://testserver/api/v1/uploads/${++this.serial}/`;
    this.uploads.set(url, { length, chunks: [], offset: 0 });
    return url;
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    const waiting = this.waiting;
    this.waiting = [];
    for (const go of waiting) go();
  }

  /** The bytes the server stored for an upload, in order. */
  async text(url: string): Promise<string> {
    const stored = this.uploads.get(url)!;
    return new Blob(stored.chunks as BlobPart[]).text();
  }

  getName() {
    return "FakeTusServer";
  }

  createRequest(method: string, url: string): HttpRequest {
    const headers: Record<string, string> = {};
    let progress: (sent: number) => void = () => undefined;
    let aborted = false;
    const server = this;
    return {
      getMethod: () => method,
      getURL: () => url,
      setHeader: (name: string, value: string) => {
        headers[name] = value;
      },
      getHeader: (name: string) => headers[name],
      setProgressHandler: (handler: (sent: number) => void) => {
        progress = handler;
      },
      abort: async () => {
        aborted = true;
      },
      getUnderlyingObject: () => null,
      async send(body?: Blob | null): Promise<HttpResponse> {
        const bytes = body ? new Uint8Array(await body.arrayBuffer()) : new Uint8Array();
        server.calls.push({ method, url, headers: { ...headers }, bytes: bytes.length });
        const stored = server.uploads.get(url);
        if (!stored) return new Response(404, {}, JSON.stringify({ error: { code: "not_found", message: "", fields: {} } }));
        if (method === "HEAD") return new Response(200, { "Upload-Offset": String(stored.offset), "Upload-Length": String(stored.length) });
        if (method === "DELETE") {
          server.uploads.delete(url);
          return new Response(204, {});
        }
        if (server.refuseNext) {
          const { status, body: answer } = server.refuseNext;
          server.refuseNext = null;
          return new Response(status, { "Content-Type": "application/json" }, JSON.stringify(answer));
        }
        if (Number(headers["Upload-Offset"]) !== stored.offset) return new Response(409, {}, JSON.stringify({ error: { code: "offset_mismatch", message: "", fields: {} } }));
        if (server.holding) {
          progress(Math.floor(bytes.length / 2));
          await new Promise<void>((resolve) => server.waiting.push(resolve));
          if (aborted) throw new Error("aborted");
        }
        progress(bytes.length);
        stored.chunks.push(bytes);
        stored.offset += bytes.length;
        return new Response(204, { "Upload-Offset": String(stored.offset) });
      },
    };
  }
}
