import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { FileHasher, HASH_STEP_BYTES } from "./sha256";

describe("FileHasher", () => {
  it("hashes in steps, reports each, and goes on where it was stopped", async () => {
    // given 2.5 steps of bytes
    const bytes = new Uint8Array(HASH_STEP_BYTES * 2.5).map((_, i) => (i * 7) % 256);
    const hasher = new FileHasher(new Blob([bytes]));
    const seen: number[] = [];
    // when stopped after the first step
    let steps = 0;
    expect(await hasher.run((n) => seen.push(n), () => steps++ >= 1)).toBeNull();
    expect(hasher.offset).toBe(HASH_STEP_BYTES);
    // then resumed to the end
    const digest = await hasher.run((n) => seen.push(n), () => false);
    expect(seen).toEqual([HASH_STEP_BYTES, HASH_STEP_BYTES * 2, bytes.length]);
    expect(digest).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("hashes an empty file", async () => {
    expect(await new FileHasher(new Blob([])).run(() => undefined, () => false)).toBe(createHash("sha256").update("").digest("hex"));
  });
});
