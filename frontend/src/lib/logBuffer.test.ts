import { describe, expect, it, vi } from "vitest";
import { LogBuffer } from "./logBuffer";

const bytes = (s: string) => new TextEncoder().encode(s).length;

/** A fake server log: GET …/logs/?offset=N returns everything from N. */
function serverLog(full: string) {
  const all = new TextEncoder().encode(full);
  return vi.fn(async (offset: number) => {
    const data = new TextDecoder().decode(all.subarray(offset));
    return { offset, data, next_offset: all.length };
  });
}

describe("LogBuffer", () => {
  it("appends chunks that arrive in order without fetching", async () => {
    // given
    const fetch = serverLog("");
    const buffer = new LogBuffer(fetch);
    // when
    await buffer.push(0, "hello\n");
    await buffer.push(6, "world\n");
    // then
    expect(buffer.text).toBe("hello\nworld\n");
    expect(buffer.end).toBe(12);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("fills a gap by offset before applying the chunk after it", async () => {
    // given a chunk at 0, then one at 12: bytes 6..12 were dropped on the way
    const fetch = serverLog("hello\nworld\nthird\n");
    const buffer = new LogBuffer(fetch);
    await buffer.push(0, "hello\n");
    // when
    await buffer.push(12, "third\n");
    // then the missing bytes were fetched from offset 6 and nothing is doubled
    expect(fetch).toHaveBeenCalledWith(6, undefined);
    expect(buffer.text).toBe("hello\nworld\nthird\n");
    expect(buffer.end).toBe(18);
  });

  it("ignores duplicates and keeps only the new tail of an overlapping chunk", async () => {
    const buffer = new LogBuffer(serverLog(""));
    await buffer.push(0, "abcdef");
    await buffer.push(0, "abcdef");
    await buffer.push(3, "defghi");
    expect(buffer.text).toBe("abcdefghi");
    expect(buffer.end).toBe(9);
  });

  it("counts offsets in UTF-8 bytes, not characters", async () => {
    // given "é" (2 bytes) and "🚀" (4 bytes)
    const first = "café ";
    const buffer = new LogBuffer(serverLog(""));
    await buffer.push(0, first);
    // when the next chunk starts at the byte offset
    await buffer.push(bytes(first), "🚀 done");
    await buffer.push(bytes(first), "🚀 done"); // a resend
    // then
    expect(buffer.text).toBe("café 🚀 done");
    expect(buffer.end).toBe(bytes("café 🚀 done"));
  });

  it("catches up after a reconnect from where it stopped", async () => {
    const fetch = serverLog("one\ntwo\nthree\n");
    const buffer = new LogBuffer(fetch);
    await buffer.push(0, "one\n");
    await buffer.catchUp();
    expect(fetch).toHaveBeenCalledWith(4, undefined);
    expect(buffer.text).toBe("one\ntwo\nthree\n");
  });

  it("notifies subscribers on each append", async () => {
    const buffer = new LogBuffer(serverLog(""));
    const listener = vi.fn();
    buffer.subscribe(listener);
    await buffer.push(0, "a");
    await buffer.push(0, "a");
    expect(listener).toHaveBeenCalledTimes(1);
  });

  it("starts over at offset 0 for a newer attempt and ignores a stale attempt's chunks", async () => {
    // given attempt 1 logged something, then was lost
    const fetch = vi.fn(async (offset: number, attempt?: number) => ({ attempt, offset, data: "", next_offset: offset }));
    const buffer = new LogBuffer(fetch);
    await buffer.push(0, "first try\n", 1);
    // when attempt 2 logs from 0, and a late chunk of attempt 1 arrives
    await buffer.push(0, "second try\n", 2);
    await buffer.push(10, "late\n", 1);
    // then
    expect(buffer.text).toBe("first try\n\n--- attempt 2 ---\nsecond try\n");
    expect(buffer.attempt).toBe(2);
    expect(buffer.end).toBe(11);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("fills a gap within the chunk's attempt", async () => {
    const fetch = vi.fn(async (offset: number, attempt?: number) => ({ attempt, offset, data: "bb\n", next_offset: offset + 3 }));
    const buffer = new LogBuffer(fetch);
    await buffer.push(0, "aa\n", 3);
    await buffer.push(6, "cc\n", 3);
    expect(fetch).toHaveBeenCalledWith(3, 3);
    expect(buffer.text).toBe("aa\nbb\ncc\n");
  });

  it("jumps over a head the server dropped from a long log", async () => {
    // given the server kept only the tail, from byte 1000
    const fetch = vi.fn(async () => ({ attempt: 1, offset: 1000, data: "[earlier output dropped]\ntail\n", next_offset: 1005, complete: true }));
    const buffer = new LogBuffer(fetch);
    // when
    await buffer.catchUp();
    // then
    expect(buffer.text).toBe("[earlier output dropped]\ntail\n");
    expect(buffer.end).toBe(1005);
  });

  it("trusts the server's next_offset over the decoded text's length", async () => {
    const buffer = new LogBuffer(serverLog(""));
    await buffer.push(0, "bad \ufffd byte\n", 1, 11);
    expect(buffer.end).toBe(11);
  });
});
