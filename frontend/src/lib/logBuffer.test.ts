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
    expect(fetch).toHaveBeenCalledWith(6);
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
    expect(fetch).toHaveBeenCalledWith(4);
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
});
