import { createHash } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { json, mockFetch } from "../test/fetchMock";
import { FakeTusServer } from "../test/fakeTus";
import { InputUploads, inputStateText, uploadSettings, type InputItem } from "./inputUploads";
import { HASH_STEP_BYTES } from "./sha256";

let tus: FakeTusServer;
beforeEach(() => {
  tus = new FakeTusServer();
  uploadSettings.httpStack = tus;
  uploadSettings.retryDelays = [];
  window.localStorage.clear();
});
afterEach(() => {
  uploadSettings.httpStack = undefined;
  uploadSettings.retryDelays = [0, 1000, 3000, 5000, 10000, 20000];
});

function server() {
  return mockFetch({
    "POST /api/v1/uploads/": (call) => {
      const length = Number(call.headers.get("Upload-Length"));
      return json(201, { id: "u", offset: 0, length, sha256: "", status: "uploading" }, { Location: tus.create(length) });
    },
  });
}

/** Every state the item passed through, as the list shows it. */
function record(uploads: InputUploads): string[] {
  const seen: string[] = [];
  uploads.subscribe(() => {
    const item: InputItem | undefined = uploads.snapshot()[0];
    const text = item ? `${inputStateText(item)} ${item.hashed}/${item.sent}` : "none";
    if (seen[seen.length - 1] !== text) seen.push(text);
  });
  return seen;
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
};

describe("InputUploads", () => {
  it("reports hashing, then upload progress, then done", async () => {
    // given
    server();
    const uploads = new InputUploads();
    const seen = record(uploads);
    const bytes = new Uint8Array(HASH_STEP_BYTES * 2 + 10);
    // when
    uploads.add([{ path: "x.bin", file: new File([bytes], "x.bin") }]);
    await until(() => uploads.snapshot()[0]!.status === "done");
    // then
    const size = bytes.length;
    expect(seen).toEqual([
      "Waiting to be hashed 0/0",
      "Hashing 0% 0/0",
      `Hashing 49% ${HASH_STEP_BYTES}/0`,
      `Hashing 99% ${HASH_STEP_BYTES * 2}/0`,
      `Hashing 100% ${size}/0`,
      `Checking whether you already store it ${size}/0`,
      `Waiting to upload ${size}/0`,
      `Uploading 0% ${size}/0`,
      // two PATCHes: 8 MiB, then the last 10 bytes
      `Uploading 99% ${size}/${8 * 1024 * 1024}`,
      `Uploading 100% ${size}/${size}`,
      `Uploaded ${size}/${size}`,
    ]);
    expect(uploads.inputs()).toEqual([{ path: "x.bin", sha256: createHash("sha256").update(bytes).digest("hex") }]);
  });

  it("pauses hashing where it is and resumes from there", async () => {
    server();
    const uploads = new InputUploads();
    uploads.add([{ path: "y.bin", file: new File([new Uint8Array(HASH_STEP_BYTES * 2)], "y.bin") }]);
    const id = uploads.snapshot()[0]!.id;
    uploads.pause(id);
    await new Promise((r) => setTimeout(r, 50));
    expect(uploads.snapshot()[0]).toMatchObject({ status: "hashing", paused: true, hashed: 0 });
    uploads.resume(id);
    await until(() => uploads.snapshot()[0]!.status === "done");
  });

  it("continues an upload the server still has when the same bytes are added after a reload", async () => {
    // given an upload of which the server has 3 of 6 bytes, remembered by its sha256
    const { calls } = server();
    const url = tus.create(6);
    tus.uploads.get(url)!.chunks.push(new TextEncoder().encode("abc"));
    tus.uploads.get(url)!.offset = 3;
    const digest = createHash("sha256").update("abcdef").digest("hex");
    window.localStorage.setItem(`cp-upload:${digest}:6`, url);
    // when the file is added again
    const uploads = new InputUploads();
    uploads.add([{ path: "r.txt", file: new File(["abcdef"], "r.txt") }]);
    await until(() => uploads.snapshot()[0]!.status === "done");
    // then nothing new was created and only the rest was sent
    expect(calls.filter((c) => c.url === "/api/v1/uploads/")).toHaveLength(0);
    expect(tus.calls.map((c) => `${c.method} ${c.bytes} ${c.headers["Upload-Offset"] ?? ""}`)).toEqual(["HEAD 0 ", "PATCH 3 3"]);
    expect(await tus.text(url)).toBe("abcdef");
    expect(window.localStorage.getItem(`cp-upload:${digest}:6`)).toBeNull();
  });

  it("starts a new upload when the remembered one is gone from the server", async () => {
    const { calls } = server();
    const digest = createHash("sha256").update("gone").digest("hex");
    window.localStorage.setItem(`cp-upload:${digest}:4`, "http://testserver/api/v1/uploads/expired/");
    const uploads = new InputUploads();
    uploads.add([{ path: "g.txt", file: new File(["gone"], "g.txt") }]);
    await until(() => uploads.snapshot()[0]!.status === "done");
    expect(calls.filter((c) => c.url === "/api/v1/uploads/")).toHaveLength(1);
  });

  it("stops the work when the page detaches and goes on from the server's offset when it attaches again", async () => {
    server();
    tus.hold();
    const uploads = new InputUploads();
    uploads.add([{ path: "d.txt", file: new File(["dddd"], "d.txt") }]);
    await until(() => tus.calls.some((c) => c.method === "PATCH"));
    uploads.detach();
    tus.release();
    await new Promise((r) => setTimeout(r, 30));
    expect(uploads.snapshot()[0]!.status).toBe("uploading");
    uploads.attach();
    await until(() => uploads.snapshot()[0]!.status === "done");
    expect(tus.calls.map((c) => c.method)).toEqual(["HEAD", "PATCH", "HEAD", "PATCH"]);
    expect(await tus.text(tus.calls[0]!.url)).toBe("dddd");
  });

  it("deletes an upload under way on the server when the file is removed", async () => {
    server();
    tus.hold();
    const uploads = new InputUploads();
    uploads.add([{ path: "z.txt", file: new File(["zzzz"], "z.txt") }]);
    await until(() => tus.calls.some((c) => c.method === "PATCH"));
    const url = tus.calls[0]!.url;
    uploads.remove(uploads.snapshot()[0]!.id);
    await until(() => tus.calls.some((c) => c.method === "DELETE"));
    tus.release();
    expect(uploads.snapshot()).toEqual([]);
    expect(tus.uploads.has(url)).toBe(false);
  });
});
