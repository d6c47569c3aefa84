import type { IHasher } from "hash-wasm";

/** Bytes read (and hashed) per step: small enough to keep the page responsive between steps. */
export const HASH_STEP_BYTES = 4 * 1024 * 1024;

/**
 * An incremental sha256 of a file that can stop and go on where it stopped. WebCrypto's digest
 * needs the whole file in memory, which a multi-gigabyte input is not; hash-wasm keeps the
 * state between steps, so pausing keeps what was hashed and resuming reads on from there.
 */
export class FileHasher {
  private hasher: IHasher | null = null;
  /** Bytes hashed so far. */
  offset = 0;

  constructor(private readonly blob: Blob) {}

  /**
   * Hashes on from `offset`; resolves with the hex digest at the end, or null when `shouldStop`
   * said so between two steps (call `run` again to go on).
   */
  async run(onProgress: (hashed: number) => void, shouldStop: () => boolean): Promise<string | null> {
    // Loaded on the first file, so the Run page does not carry it until it is needed.
    this.hasher ??= (await (await import("hash-wasm")).createSHA256()).init();
    while (this.offset < this.blob.size) {
      if (shouldStop()) return null;
      const end = Math.min(this.offset + HASH_STEP_BYTES, this.blob.size);
      const bytes = new Uint8Array(await this.blob.slice(this.offset, end).arrayBuffer());
      this.hasher.update(bytes);
      this.offset = end;
      onProgress(this.offset);
    }
    return this.hasher.digest("hex");
  }
}
