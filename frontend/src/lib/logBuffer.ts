// The job's log as the browser knows it: every byte from 0 up to `end`, with no holes.
// Chunks arrive over the websocket with byte offsets, possibly twice, late or after a gap
// (the channel layer may drop messages, and a reconnect misses whatever was sent meanwhile).
// A chunk past `end` means bytes are missing: fetch them with GET …/logs/?offset=end first.
import type { LogChunk } from "../api/types";

export type LogFetcher = (offset: number) => Promise<LogChunk>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class LogBuffer {
  private parts: string[] = [];
  private endOffset = 0;
  private queue: Promise<void> = Promise.resolve();
  private listeners = new Set<() => void>();

  constructor(private readonly fetchFrom: LogFetcher) {}

  get end(): number {
    return this.endOffset;
  }

  get text(): string {
    return this.parts.join("");
  }

  /** The appended pieces, in order (the view renders each as its own node). */
  get chunks(): readonly string[] {
    return this.parts;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A chunk from the socket. Serialised so a gap fill finishes before later chunks apply. */
  push(offset: number, data: string): Promise<void> {
    this.queue = this.queue.then(() => this.apply(offset, data)).catch(() => undefined);
    return this.queue;
  }

  /** Fetch whatever the server has past `end` (after a reconnect, or on a timer). */
  catchUp(): Promise<void> {
    this.queue = this.queue.then(() => this.fillFrom(this.endOffset)).catch(() => undefined);
    return this.queue;
  }

  private async apply(offset: number, data: string): Promise<void> {
    if (offset > this.endOffset) {
      await this.fillFrom(this.endOffset, offset);
      if (offset > this.endOffset) return; // the server had no more yet; the chunk is unplaceable
    }
    this.appendAt(offset, data);
  }

  /** Fetch from `from` until at least `until` (or until the server has nothing more). */
  private async fillFrom(from: number, until = Number.POSITIVE_INFINITY): Promise<void> {
    let next = from;
    for (let round = 0; round < 1000 && next < until; round++) {
      const chunk = await this.fetchFrom(next);
      const before = this.endOffset;
      this.appendAt(chunk.offset, chunk.data);
      if (this.endOffset === before || chunk.complete) return;
      next = this.endOffset;
    }
  }

  /** Append the part of `data` (starting at byte `offset`) that lies past `end`. */
  private appendAt(offset: number, data: string): void {
    if (!data || offset > this.endOffset) return;
    const bytes = encoder.encode(data);
    const skip = this.endOffset - offset;
    if (skip >= bytes.length) return; // a duplicate: already have every byte
    const fresh = skip > 0 ? decoder.decode(bytes.subarray(skip)) : data;
    this.parts.push(fresh);
    this.endOffset = offset + bytes.length;
    this.listeners.forEach((listener) => listener());
  }
}
