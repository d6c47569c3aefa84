import { describe, expect, it } from "vitest";
import { multipartBuild } from "./files";

describe("multipartBuild", () => {
  it("builds the same bytes for the same seed, so an idempotent retry matches", async () => {
    const zip = new Blob([new Uint8Array([80, 75, 3, 4])]);
    const build = () => multipartBuild([["entrypoint", "main.py"], ["cpus", "1"]], { name: "archive", filename: "job.zip", blob: zip }, "1f0e-uuid");
    const a = build();
    const b = build();
    expect(a.contentType).toBe("multipart/form-data; boundary=----communipute-1f0euuid");
    const text = await a.body.text();
    expect(text).toBe(await b.body.text());
    expect(text).toContain('Content-Disposition: form-data; name="entrypoint"\r\n\r\nmain.py\r\n');
    expect(text).toContain('name="archive"; filename="job.zip"\r\nContent-Type: application/zip\r\n\r\nPK');
    expect(text.endsWith("\r\n------communipute-1f0euuid--\r\n")).toBe(true);
  });
});
