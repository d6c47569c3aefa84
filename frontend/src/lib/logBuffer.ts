// The job's log as the browser knows it. Offsets are bytes and count per attempt (a requeued
// job starts a fresh log at 0), so the buffer holds the current attempt's bytes from its start
// up to `end` with no holes, after the earlier attempts' text.
// Chunks arrive over the websocket with byte offsets, possibly twice, late or after a gap
// (the channel layer may drop messages, and a reconnect misses whatever was sent meanwhile).
// A chunk past `end` means bytes are missing: fetch them with GET …/logs/?offset=end first.
import type { LogChunk } from "../api/types";

export type LogFetcher = (offset: number, attempt?: number) => Promise<LogChunk>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class LogBuffer {
  private parts: string[] = [];
  private endOffset = 0;
  private currentAttempt: number | null = null;
  private queue: Promise<void> = Promise.resolve();
  private listeners = new Set<() => void>();

  constructor(private readonly fetchFrom: LogFetcher) {}

  /** Bytes held of the current attempt's log. */
  get end(): number {
    return this.endOffset;
  }

  get attempt(): number | null {
    return this.currentAttempt;
  }

  get text(): string {
    return this.parts.join("");
  }

  /** The appended pieces, in order (the view renders each as its own node). */
  get chunks(): readonly string[] {
    return this.parts;
  }

  /** Changes whenever text is added (for useSyncExternalStore). */
  get version(): number {
    return this.parts.length;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A chunk from the socket. Serialised so a gap fill finishes before later chunks apply. */
  push(offset: number, data: string, attempt?: number, nextOffset?: number): Promise<void> {
    this.queue = this.queue.then(() => this.apply(offset, data, attempt, nextOffset)).catch(() => undefined);
    return this.queue;
  }

  /** Fetch whatever the server has past `end` (after a reconnect, or on a timer). */
  catchUp(): Promise<void> {
    this.queue = this.queue.then(() => this.fillFrom(undefined)).catch(() => undefined);
    return this.queue;
  }

  private async apply(offset: number, data: string, attempt?: number, nextOffset?: number): Promise<void> {
    if (attempt !== undefined && !this.attemptAccept(attempt)) return;
    if (offset > this.endOffset) {
      await this.fillFrom(attempt, offset);
      if (offset > this.endOffset) return; // the server has no more yet; a later catch-up will
    }
    this.appendAt(offset, data, nextOffset);
  }

  /** Switch to a newer attempt (its log starts over); false for a stale attempt's chunk. */
  private attemptAccept(attempt: number): boolean {
    if (this.currentAttempt === null) {
      this.currentAttempt = attempt;
      return true;
    }
    if (attempt < this.currentAttempt) return false;
    if (attempt > this.currentAttempt) {
      this.currentAttempt = attempt;
      this.endOffset = 0;
      if (this.parts.length) this.emit(`\n--- attempt ${attempt} ---\n`);
    }
    return true;
  }

  /** Fetch from `end` until at least `until` (or until the server has nothing more). */
  private async fillFrom(attempt: number | undefined, until = Number.POSITIVE_INFINITY): Promise<void> {
    for (let round = 0; round < 1000 && this.endOffset < until; round++) {
      const chunk = await this.fetchFrom(this.endOffset, attempt ?? this.currentAttempt ?? undefined);
      if (chunk.attempt !== undefined && chunk.attempt !== null && !this.attemptAccept(chunk.attempt)) return;
      if (chunk.offset > this.endOffset) {
        // The server dropped the head of a long log (it keeps the tail and says so in data).
        this.endOffset = chunk.offset;
      }
      const before = this.endOffset;
      this.appendAt(chunk.offset, chunk.data, chunk.next_offset);
      if (this.endOffset === before || chunk.complete) return;
    }
  }

  /** Append the part of `data` (starting at byte `offset`) that lies past `end`. */
  private appendAt(offset: number, data: string, nextOffset?: number): void {
    if (!data || offset > this.endOffset) return;
    const bytes = encoder.encode(data);
    const skip = this.endOffset - offset;
    if (skip >= bytes.length) return; // a duplicate: already have every byte
    this.emit(skip > 0 ? decoder.decode(bytes.subarray(skip)) : data);
    // The server's own end wins: undecodable bytes were replaced, so the text may be longer.
    this.endOffset = nextOffset !== undefined && nextOffset > offset ? nextOffset : offset + bytes.length;
  }

  private emit(text: string): void {
    this.parts.push(text);
    this.listeners.forEach((listener) => listener());
  }
}
