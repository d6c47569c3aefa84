// The Run page's input files, and its zip as the job's code: each one is hashed (sha256, in
// the browser), checked against what the user already stores, and uploaded with tus
// (docs/data.md) unless it is held.
// One state machine per file; a small scheduler runs one hash and a few uploads at a time.
import type { DetailedError, HttpStack, Upload } from "tus-js-client";
import { UPLOAD_CHUNK_BYTES, type JobInputSpec } from "../api/blobs";
import { ensureCsrf } from "../api/client";
import { api } from "../api/endpoints";
import { ApiError, apiErrorFrom, errorMessage } from "../api/errors";
import type { PickedFile } from "./dropFiles";
import { FileHasher } from "./sha256";

/**
 * waiting → hashing → checking → (done: already held) | queued → uploading → done;
 * any step → failed. `paused` stops hashing or uploading where it is, and resuming goes on
 * from there (the hash state is kept; tus asks the server for its offset).
 */
export type InputStatus = "waiting" | "hashing" | "checking" | "queued" | "uploading" | "done" | "failed";

export interface InputItem {
  id: string;
  path: string;
  size: number;
  status: InputStatus;
  paused: boolean;
  /** Bytes hashed, and bytes the server has. */
  hashed: number;
  sent: number;
  sha256: string | null;
  /** Done without sending: the user already stored these bytes. */
  skipped: boolean;
  /** The sentence a person reads, and the API's code (quota_exceeded …) when there is one. */
  error: string | null;
  code: string | null;
}

export interface UploadSettings {
  /** tus-js-client's HTTP stack; the browser's XMLHttpRequest one (upload progress) by default. */
  httpStack?: HttpStack;
  /** tus retries of a PATCH or HEAD that failed on the network or with a 5xx, 409 or 423. */
  retryDelays: number[];
  hashSlots: number;
  uploadSlots: number;
}

export const uploadSettings: UploadSettings = {
  retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
  hashSlots: 1,
  uploadSlots: 3,
};

/** The same bytes dropped again after a reload continue the upload that the server still has. */
const RESUME_PREFIX = "cp-upload:";
const resumeKey = (sha256: string, size: number) => `${RESUME_PREFIX}${sha256}:${size}`;

function resumeUrlGet(sha256: string, size: number): string | null {
  try {
    return window.localStorage.getItem(resumeKey(sha256, size));
  } catch {
    return null; // storage disabled: uploads still work, only without resuming after a reload
  }
}

function resumeUrlSet(sha256: string, size: number, url: string | null): void {
  try {
    if (url) window.localStorage.setItem(resumeKey(sha256, size), url);
    else window.localStorage.removeItem(resumeKey(sha256, size));
  } catch {
    /* storage disabled */
  }
}

type TusOptions = ConstructorParameters<typeof Upload>[1];

/** tus-js-client, loaded with the first upload (the Run page does not carry it until then). */
let tusModule: Promise<typeof import("tus-js-client")> | null = null;
function tusLoad(): Promise<typeof import("tus-js-client")> {
  tusModule ??= import("tus-js-client");
  return tusModule;
}

/** tus-js-client's DetailedError (told by its fields: the module is loaded lazily). */
function isDetailed(err: unknown): err is DetailedError {
  return err instanceof Error && "originalRequest" in err && "originalResponse" in err;
}

/** An error from tus-js-client as an ApiError: the JSON refusal when the server sent one. */
export function uploadError(err: unknown): ApiError {
  if (isDetailed(err) && err.originalResponse) {
    const response = err.originalResponse;
    let body: unknown = null;
    try {
      body = JSON.parse(response.getBody());
    } catch {
      body = null;
    }
    return apiErrorFrom(response.getStatus(), body);
  }
  if (err instanceof ApiError) return err;
  return new ApiError(0, "network", "The connection dropped and the retries ran out; check your connection and press Retry: the upload goes on from where it stopped.");
}

/** What the running work of one item holds; not part of what the page renders. */
interface Work {
  file: File;
  hasher: FileHasher;
  running: boolean;
  removed: boolean;
  url: string | null;
  /** Whether `url` came from the resume store (so a 404 on it means: start a new upload). */
  resumed: boolean;
  tus: Upload | null;
}

let nextId = 0;

export class InputUploads {
  private items: InputItem[] = [];
  private readonly work = new Map<string, Work>();
  private readonly listeners = new Set<() => void>();
  private attached = true;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  snapshot = (): InputItem[] => this.items;

  /** Adds files; one dropped again under the same path replaces the earlier one. */
  add(files: PickedFile[]): void {
    for (const picked of files) {
      const same = this.items.find((item) => item.path === picked.path);
      if (same) this.remove(same.id);
      const id = `input-${++nextId}`;
      this.work.set(id, { file: picked.file, hasher: new FileHasher(picked.file), running: false, removed: false, url: null, resumed: false, tus: null });
      this.items = [
        ...this.items,
        { id, path: picked.path, size: picked.file.size, status: "waiting", paused: false, hashed: 0, sent: 0, sha256: null, skipped: false, error: null, code: null },
      ];
    }
    this.changed();
    this.pump();
  }

  /** Drops a file from the list; an upload under way is stopped and deleted on the server. */
  remove(id: string): void {
    const work = this.work.get(id);
    const item = this.find(id);
    if (work) {
      work.removed = true;
      void work.tus?.abort();
      if (work.url && item?.status !== "done") {
        const url = work.url;
        void tusLoad()
          .then((tus) => tus.Upload.terminate(url, this.tusOptions({})))
          .catch(() => undefined);
        if (item?.sha256) resumeUrlSet(item.sha256, item.size, null);
      }
    }
    this.work.delete(id);
    this.items = this.items.filter((x) => x.id !== id);
    this.changed();
    this.pump();
  }

  pause(id: string): void {
    const item = this.find(id);
    if (!item || item.paused || item.status === "done" || item.status === "failed") return;
    const work = this.work.get(id);
    if (work?.tus && item.status === "uploading") {
      void work.tus.abort();
      work.running = false;
    }
    this.update(id, { paused: true });
    this.pump();
  }

  resume(id: string): void {
    if (!this.find(id)?.paused) return;
    this.update(id, { paused: false });
    this.pump();
  }

  pauseAll(): void {
    for (const item of this.items) this.pause(item.id);
  }

  resumeAll(): void {
    for (const item of this.items) if (item.paused) this.update(item.id, { paused: false });
    this.pump();
  }

  /** A failed file again: the upload goes on from the server's offset; a bad digest or a failed
   * hash starts over from reading the file. */
  retry(id: string): void {
    const item = this.find(id);
    const work = this.work.get(id);
    if (!item || !work || item.status !== "failed") return;
    const fromStart = !item.sha256 || item.code === "digest_mismatch";
    if (fromStart) {
      work.hasher = new FileHasher(work.file);
      work.tus = null;
      work.url = null;
      this.update(id, { status: "waiting", hashed: 0, sent: 0, sha256: null, error: null, code: null, paused: false });
    } else {
      this.update(id, { status: work.tus ? "uploading" : "queued", error: null, code: null, paused: false });
    }
    this.pump();
  }

  /** The page is gone (or React re-mounts it): stop the work, keep the state. */
  detach(): void {
    this.attached = false;
    for (const work of this.work.values()) {
      // A hash step or a creation in flight sees `attached` and stops by itself (clearing
      // `running` then, so a quick re-attach never runs two loops over one hasher).
      if (work.tus && work.running) {
        void work.tus.abort();
        work.running = false;
      }
    }
  }

  attach(): void {
    this.attached = true;
    this.pump();
  }

  /** The inputs a submit names: every finished file as {path, sha256}. */
  inputs(): JobInputSpec[] {
    return this.items.filter((item) => item.status === "done" && item.sha256).map((item) => ({ path: item.path, sha256: item.sha256! }));
  }

  private find(id: string): InputItem | undefined {
    return this.items.find((item) => item.id === id);
  }

  private update(id: string, patch: Partial<InputItem>): void {
    if (!this.work.has(id)) return;
    this.items = this.items.map((item) => (item.id === id ? { ...item, ...patch } : item));
    this.changed();
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  private fail(id: string, err: unknown): void {
    const error = err instanceof ApiError ? err : null;
    const work = this.work.get(id);
    if (work) work.running = false;
    this.update(id, { status: "failed", error: error ? error.message : errorMessage(err), code: error?.code ?? null });
    this.pump();
  }

  /** Starts whatever may start: one hash and `uploadSlots` uploads at a time. */
  private pump(): void {
    if (!this.attached) return;
    const running = (statuses: InputStatus[]) =>
      this.items.filter((item) => statuses.includes(item.status) && this.work.get(item.id)?.running).length;
    const ready = (statuses: InputStatus[]) =>
      this.items.filter((item) => statuses.includes(item.status) && !item.paused && !this.work.get(item.id)?.running);
    let hashing = running(["hashing", "checking"]);
    for (const item of ready(["waiting", "hashing"])) {
      if (hashing >= uploadSettings.hashSlots) break;
      hashing++;
      void this.hash(item.id);
    }
    let uploading = running(["uploading"]);
    for (const item of ready(["queued", "uploading"])) {
      if (uploading >= uploadSettings.uploadSlots) break;
      uploading++;
      void this.upload(item.id);
    }
  }

  private async hash(id: string): Promise<void> {
    const work = this.work.get(id)!;
    work.running = true;
    this.update(id, { status: "hashing" });
    try {
      const digest = await work.hasher.run(
        (hashed) => this.update(id, { hashed }),
        () => work.removed || !this.attached || this.find(id)?.paused === true,
      );
      if (digest === null) {
        work.running = false;
        this.pump();
        return;
      }
      this.update(id, { status: "checking", sha256: digest });
      const held = await api.blobHeld(digest);
      work.running = false;
      if (held) this.update(id, { status: "done", skipped: true, sent: work.file.size });
      else this.update(id, { status: "queued" });
      this.pump();
    } catch (err) {
      this.fail(id, err);
    }
  }

  private async upload(id: string): Promise<void> {
    const work = this.work.get(id)!;
    const item = this.find(id)!;
    const sha256 = item.sha256!;
    work.running = true;
    this.update(id, { status: "uploading" });
    try {
      if (work.tus) {
        work.tus.start(); // HEAD for the server's offset, then PATCH on from there
        return;
      }
      if (!work.url) {
        const stored = resumeUrlGet(sha256, item.size);
        if (stored) {
          work.url = stored;
          work.resumed = true;
        } else {
          const created = await api.uploadCreate(item.size, sha256, item.path);
          if (work.removed) return;
          if (created.complete) {
            work.running = false;
            this.update(id, { status: "done", skipped: true, sent: item.size });
            this.pump();
            return;
          }
          work.url = created.url;
          work.resumed = false;
          resumeUrlSet(sha256, item.size, created.url);
        }
      }
      const token = await ensureCsrf();
      const tus = await tusLoad();
      if (work.removed || !this.attached || this.find(id)?.paused) {
        work.running = false;
        return;
      }
      work.tus = new tus.Upload(work.file, this.tusOptions({
        uploadUrl: work.url,
        metadata: { sha256, filename: item.path },
        headers: token ? { "X-CSRFToken": token } : {},
        onProgress: (sent) => this.update(id, { sent }),
        onSuccess: () => {
          resumeUrlSet(sha256, item.size, null);
          work.running = false;
          this.update(id, { status: "done", sent: item.size });
          this.pump();
        },
        onError: (err) => this.uploadFailed(id, err),
      }));
      work.tus.start();
    } catch (err) {
      this.fail(id, err);
    }
  }

  private uploadFailed(id: string, err: Error): void {
    const work = this.work.get(id);
    const item = this.find(id);
    if (!work || !item) return;
    const status = isDetailed(err) ? err.originalResponse?.getStatus() : undefined;
    const method = isDetailed(err) ? err.originalRequest?.getMethod() : undefined;
    // A stored URL the server no longer has (expired, aborted): start a new upload.
    if (work.resumed && method === "HEAD" && (status === 404 || status === 410)) {
      resumeUrlSet(item.sha256!, item.size, null);
      work.tus = null;
      work.url = null;
      work.resumed = false;
      work.running = false;
      this.update(id, { status: "queued", sent: 0 });
      this.pump();
      return;
    }
    const error = uploadError(err);
    if (error.code === "digest_mismatch" || status === 404 || status === 410) {
      resumeUrlSet(item.sha256!, item.size, null);
      work.tus = null;
      work.url = null;
    }
    this.fail(id, error);
  }

  private tusOptions(extra: TusOptions): TusOptions {
    return {
      endpoint: null, // creation goes through api.uploadCreate; tus only HEADs and PATCHes
      chunkSize: UPLOAD_CHUNK_BYTES,
      retryDelays: uploadSettings.retryDelays,
      storeFingerprintForResuming: false, // resumed by sha256 instead (resumeUrlGet)
      ...(uploadSettings.httpStack ? { httpStack: uploadSettings.httpStack } : {}),
      ...extra,
    };
  }
}

export interface InputsSummary {
  total: number;
  done: number;
  failed: number;
  /** Not done and not failed: what a submit waits for. */
  pending: number;
  bytes: number;
}

export function inputsSummary(items: InputItem[]): InputsSummary {
  const done = items.filter((item) => item.status === "done").length;
  const failed = items.filter((item) => item.status === "failed").length;
  return { total: items.length, done, failed, pending: items.length - done - failed, bytes: items.reduce((a, item) => a + item.size, 0) };
}

function percent(part: number, whole: number): number {
  return whole > 0 ? Math.floor((part * 100) / whole) : 100;
}

/** The file's state in words, as the list shows it. */
export function inputStateText(item: InputItem): string {
  const text = ((): string => {
    switch (item.status) {
      case "waiting":
        return "waiting to be hashed";
      case "hashing":
        return `hashing ${percent(item.hashed, item.size)}%`;
      case "checking":
        return "checking whether you already store it";
      case "queued":
        return "waiting to upload";
      case "uploading":
        return `uploading ${percent(item.sent, item.size)}%`;
      case "done":
        return item.skipped ? "already stored: nothing to send" : "uploaded";
      case "failed":
        return "failed";
    }
  })();
  if (item.paused) return `Paused (${text})`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}
