import { createHash } from "node:crypto";
import { act, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { uploadSettings } from "../lib/inputUploads";
import { json, mockFetch, type Call } from "../test/fetchMock";
import { FakeTusServer } from "../test/fakeTus";
import { RunPage } from "./Run";

vi.mock("../components/CodeEditor", () => ({
  CodeEditor: ({ value, onChange, label }: { value: string; onChange: (v: string) => void; label: string }) => (
    <textarea aria-label={label} value={value} onChange={(e) => onChange(e.target.value)} />
  ),
}));

const MiB = 1024 * 1024;
const sha = (text: string | Uint8Array) => createHash("sha256").update(text).digest("hex");
const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

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

interface Server {
  held?: Set<string>;
  create?: (call: Call) => Response;
  submit?: (call: Call) => Response;
}

/** The Run page against mocked JSON endpoints and the fake tus server. */
function renderRun(server: Server = {}) {
  const held = server.held ?? new Set<string>();
  const mock = mockFetch({
    "GET /api/v1/hosts/": () => json(200, { count: 0, next: null, previous: null, results: [] }),
    "POST /api/v1/quotes/": () => json(200, { estimate_micros: 1_000, hosts: [{ host: 5, name: "lab-1", estimate_micros: 1_000 }] }),
    "POST /api/v1/jobs/": server.submit ?? (() => json(201, { id: 99, status: "queued" })),
    "POST /api/v1/uploads/":
      server.create ??
      ((call) => {
        const length = Number(call.headers.get("Upload-Length"));
        const url = tus.create(length);
        return json(201, { id: "u", offset: 0, length, sha256: "", status: "uploading" }, { Location: url, "Upload-Offset": "0" });
      }),
  });
  // HEAD /api/v1/blobs/<sha>/: held or not
  const routed = mock.fn.getMockImplementation()!;
  mock.fn.mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const match = /\/api\/v1\/blobs\/([0-9a-f]{64})\/$/.exec(url);
    if (match && init?.method === "HEAD") {
      mock.calls.push({ method: "HEAD", url, headers: new Headers(init.headers), body: null });
      return new Response(null, { status: held.has(match[1]!) ? 200 : 404 });
    }
    return routed(input, init);
  });
  render(
    <MemoryRouter initialEntries={["/run"]}>
      <Routes>
        <Route path="/run" element={<RunPage />} />
        <Route path="/jobs/:id" element={<p>job page</p>} />
      </Routes>
    </MemoryRouter>,
  );
  return mock;
}

type FakeEntry = { isFile: boolean; isDirectory: boolean; name: string; fullPath: string } & Record<string, unknown>;

function fileEntry(file: File, dir = ""): FakeEntry {
  return { isFile: true, isDirectory: false, name: file.name, fullPath: `${dir}/${file.name}`, file: (ok: (f: File) => void) => ok(file) };
}

/** A folder whose reader answers in batches of two, as browsers answer in batches of 100. */
function dirEntry(name: string, children: FakeEntry[]): FakeEntry {
  return {
    isFile: false,
    isDirectory: true,
    name,
    fullPath: `/${name}`,
    createReader: () => {
      let at = 0;
      return {
        readEntries: (ok: (entries: FakeEntry[]) => void) => {
          const batch = children.slice(at, at + 2);
          at += batch.length;
          setTimeout(() => ok(batch), 0);
        },
      };
    },
  };
}

function drop(entries: FakeEntry[]) {
  const items = entries.map((entry) => ({ kind: "file", webkitGetAsEntry: () => entry, getAsFile: () => null }));
  fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { items, files: [] } });
}

const rows = () => screen.queryAllByTestId("input-row");
const rowOf = (path: string) => rows().find((row) => within(row).queryByText(path, { selector: "code" }))!;

describe("the Run page's inputs", () => {
  it("takes a drop of files and a folder (walked in batches), hashes and uploads each with tus", async () => {
    // given
    const { calls } = renderRun();
    const a = new File(["alpha,1\n"], "a.csv");
    const folder = dirEntry("data", [
      fileEntry(new File(["x"], "x.txt"), "/data"),
      fileEntry(new File(["y"], "y.txt"), "/data"),
      dirEntry("sub", [fileEntry(new File(["deep bytes"], "z.bin"), "/data/sub")]),
    ]);
    // when
    drop([fileEntry(a), folder]);
    // then every file is listed with its path under /inputs and its size
    await waitFor(() => expect(rows()).toHaveLength(4));
    expect(rows().map((row) => row.querySelector("code")!.textContent)).toEqual(["a.csv", "data/x.txt", "data/y.txt", "data/sub/z.bin"]);
    expect(rowOf("a.csv")).toHaveTextContent("8 B");
    // and each is uploaded: created with its sha256 and name, sent by tus with the CSRF header
    await waitFor(() => expect(screen.getByTestId("inputs-summary")).toHaveTextContent("4 of 4 files ready"), { timeout: 5000 });
    for (const row of rows()) expect(within(row).getByTestId("input-state")).toHaveTextContent("✓ Uploaded");
    const creates = calls.filter((c) => c.method === "POST" && c.url === "/api/v1/uploads/");
    expect(creates).toHaveLength(4);
    const first = creates.find((c) => c.headers.get("Upload-Metadata")!.includes(b64("a.csv")))!;
    expect(first.headers.get("Tus-Resumable")).toBe("1.0.0");
    expect(first.headers.get("Upload-Length")).toBe("8");
    expect(first.headers.get("Upload-Metadata")).toBe(`sha256 ${b64(sha("alpha,1\n"))},filename ${b64("a.csv")}`);
    expect(first.headers.get("X-CSRFToken")).toBe("test-csrf-token");
    const patches = tus.calls.filter((c) => c.method === "PATCH");
    expect(patches).toHaveLength(4);
    for (const patch of patches) {
      expect(patch.headers["X-CSRFToken"]).toBe("test-csrf-token");
      expect(patch.headers["Tus-Resumable"]).toBe("1.0.0");
      expect(patch.headers["Content-Type"]).toBe("application/offset+octet-stream");
    }
    expect(await tus.text([...tus.uploads.keys()].find((url) => tus.uploads.get(url)!.length === 10)!)).toBe("deep bytes");
  });

  it("takes files from the file picker", async () => {
    const user = userEvent.setup();
    renderRun();
    await user.upload(screen.getByTestId("inputs-files"), [new File(["1"], "one.txt"), new File(["22"], "two.txt")]);
    await waitFor(() => expect(rows()).toHaveLength(2));
    expect(rowOf("two.txt")).toHaveTextContent("2 B");
  });

  it("shows the upload's progress, pauses and resumes it where the server is, and holds the submit until it is done", async () => {
    // given a 12 MiB file: two PATCHes of at most 8 MiB
    const user = userEvent.setup();
    const bytes = new Uint8Array(12 * MiB).map((_, i) => i % 251);
    const { calls } = renderRun();
    tus.hold();
    await user.upload(screen.getByTestId("inputs-files"), new File([bytes], "big.bin"));
    // when the first PATCH is half sent
    const bar = await screen.findByRole("progressbar", { name: "Uploading big.bin" }, { timeout: 5000 });
    await waitFor(() => expect(bar).toHaveAttribute("value", String(4 * MiB)));
    expect(rowOf("big.bin")).toHaveTextContent("Uploading 33%");
    // then the submit waits for it
    const run = screen.getByRole("button", { name: "Run" });
    expect(run).toBeDisabled();
    expect(screen.getByTestId("uploads-wait")).toHaveTextContent("Waiting for 1 input to finish uploading.");
    // when paused: the request is dropped (the server keeps nothing of it)
    await user.click(screen.getByRole("button", { name: "Pause big.bin" }));
    expect(rowOf("big.bin")).toHaveTextContent("Paused (uploading 33%)");
    act(() => tus.release());
    tus.hold();
    // and resumed: tus asks the server for its offset and sends from there
    await user.click(screen.getByRole("button", { name: "Resume big.bin" }));
    await waitFor(() => expect(tus.calls.filter((c) => c.method === "PATCH")).toHaveLength(2));
    act(() => tus.release());
    await waitFor(() => expect(rowOf("big.bin")).toHaveTextContent("✓ Uploaded"), { timeout: 5000 });
    // (tus HEADs a URL it did not create itself before its first PATCH)
    expect(tus.calls.map((c) => `${c.method} ${c.bytes}`)).toEqual(["HEAD 0", `PATCH ${8 * MiB}`, "HEAD 0", `PATCH ${8 * MiB}`, `PATCH ${4 * MiB}`]);
    const url = [...tus.uploads.keys()][0]!;
    expect(tus.uploads.get(url)!.offset).toBe(12 * MiB);
    // and the submit names it
    expect(run).toBeEnabled();
    await user.click(run);
    await screen.findByText("job page");
    const post = calls.find((c) => c.url === "/api/v1/jobs/")!;
    expect((post.body as { inputs: unknown }).inputs).toEqual([{ path: "big.bin", sha256: sha(bytes) }]);
  });

  it("pauses and resumes all files at once", async () => {
    const user = userEvent.setup();
    renderRun();
    tus.hold();
    await user.upload(screen.getByTestId("inputs-files"), [new File(["aaaa"], "a.txt"), new File(["bbbb"], "b.txt")]);
    await waitFor(() => expect(screen.getAllByRole("progressbar", { name: /^Uploading/ })).toHaveLength(2), { timeout: 5000 });
    await user.click(screen.getByRole("button", { name: "Pause all" }));
    expect(rows().map((row) => within(row).getByTestId("input-state").textContent)).toEqual(["Paused (uploading 50%)", "Paused (uploading 50%)"]);
    act(() => tus.release());
    await user.click(screen.getByRole("button", { name: "Resume all" }));
    await waitFor(() => expect(screen.getByTestId("inputs-summary")).toHaveTextContent("2 of 2 files ready"), { timeout: 5000 });
  });

  it("sends nothing for a file the user already stores", async () => {
    const { calls } = renderRun({ held: new Set([sha("known bytes")]) });
    const user = userEvent.setup();
    await user.upload(screen.getByTestId("inputs-files"), new File(["known bytes"], "known.txt"));
    await waitFor(() => expect(rowOf("known.txt")).toHaveTextContent("✓ Already stored: nothing to send"));
    expect(calls.filter((c) => c.method === "HEAD").map((c) => c.url)).toEqual([`/api/v1/blobs/${sha("known bytes")}/`]);
    expect(calls.filter((c) => c.url === "/api/v1/uploads/")).toHaveLength(0);
    expect(tus.calls).toHaveLength(0);
  });

  it("says so clearly when the storage quota refuses a file, and keeps the job from running", async () => {
    const user = userEvent.setup();
    renderRun({
      create: () =>
        json(413, { error: { code: "quota_exceeded", message: "storage quota exceeded: 5368709120 bytes used of a 5368709120 bytes limit", fields: {} } }),
    });
    await user.upload(screen.getByTestId("inputs-files"), new File(["more"], "more.txt"));
    const alert = await within(await waitFor(() => rowOf("more.txt"))).findByRole("alert");
    expect(alert).toHaveTextContent(
      "Not enough storage left for this file (storage quota exceeded: 5.00 GB used of a 5.00 GB limit): delete stored files you no longer need (Wallet, Storage), then press Retry.",
    );
    expect(within(alert).getByRole("link", { name: "Your stored files" })).toHaveAttribute("href", "/wallet#storage");
    expect(screen.getByRole("button", { name: "Run" })).toBeDisabled();
    expect(screen.getByTestId("uploads-wait")).toHaveTextContent("1 input failed to upload: retry or remove it to run.");
    expect(tus.calls).toHaveLength(0);
    // removing it lets the job run without it
    await user.click(screen.getByRole("button", { name: "Remove more.txt" }));
    expect(rows()).toHaveLength(0);
    expect(screen.getByRole("button", { name: "Run" })).toBeEnabled();
  });

  it("says a file is too large, and that bytes changed (digest mismatch), from the server's JSON error", async () => {
    const user = userEvent.setup();
    let answer = 0;
    renderRun({
      create: (call) => {
        if (answer++ === 0) return json(413, { error: { code: "too_large", message: "Upload-Length is larger than 5368709120 bytes", fields: { "Upload-Length": ["at most 5368709120"] } } });
        return json(201, { id: "u", offset: 0, length: 3, sha256: "", status: "uploading" }, { Location: tus.create(Number(call.headers.get("Upload-Length"))) });
      },
    });
    await user.upload(screen.getByTestId("inputs-files"), new File(["big"], "huge.bin"));
    expect(await within(await waitFor(() => rowOf("huge.bin"))).findByRole("alert")).toHaveTextContent(
      "That is too large to send: Upload-Length is larger than 5.00 GB.",
    );
    tus.refuseNext = { status: 400, body: { error: { code: "digest_mismatch", message: "the bytes do not match sha256", fields: { sha256: ["does not match"] } } } };
    await user.upload(screen.getByTestId("inputs-files"), new File(["abc"], "changed.bin"));
    expect(await within(await waitFor(() => rowOf("changed.bin"))).findByRole("alert", {}, { timeout: 5000 })).toHaveTextContent(
      "The file's bytes don't match its sha256 (it changed while it was read or sent); nothing was kept. Press Retry to read it again.",
    );
    // Retry reads the file again and uploads it anew
    await user.click(screen.getByRole("button", { name: "Retry changed.bin" }));
    await waitFor(() => expect(rowOf("changed.bin")).toHaveTextContent("✓ Uploaded"), { timeout: 5000 });
  });

  it("submits uploaded and URL inputs, the disk limits and the executables switch", { timeout: 20000 }, async () => {
    // given
    const user = userEvent.setup();
    const fill = async (field: HTMLElement, text: string) => {
      await user.clear(field);
      await user.click(field);
      await user.paste(text);
    };
    const { calls } = renderRun();
    await user.upload(screen.getByTestId("inputs-files"), new File(["hello"], "hello.txt"));
    await waitFor(() => expect(rowOf("hello.txt")).toHaveTextContent("✓ Uploaded"), { timeout: 5000 });
    await user.click(screen.getByRole("button", { name: "Add by URL" }));
    const row = screen.getByRole("group", { name: "Input by URL 1" });
    await fill(within(row).getByLabelText("Path in /inputs"), "data/train.csv");
    await fill(within(row).getByLabelText("URL (https)"), "http://data.example.org/train.csv");
    const digest = "AB".repeat(32);
    await fill(within(row).getByLabelText("sha256 of the file"), digest);
    await user.click(screen.getByText("Advanced: disk limits"));
    await fill(screen.getByLabelText("Space in /work (MB)"), "4096");
    await user.click(screen.getByLabelText("Allow executables in /work"));
    // when the URL is not https, nothing is sent and the inputs say why
    await user.click(screen.getByRole("button", { name: "Run" }));
    expect(await screen.findByText(/Fix this before running/)).toBeInTheDocument();
    expect(screen.getByText(/URL input 1, URL: Only https:\/\/ URLs can be fetched\./, { selector: "#inputs-error" })).toBeInTheDocument();
    expect(calls.filter((c) => c.url === "/api/v1/jobs/")).toHaveLength(0);
    // then with an https URL it goes
    await fill(within(row).getByLabelText("URL (https)"), "https://data.example.org/train.csv");
    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    const post = calls.find((c) => c.url === "/api/v1/jobs/")!;
    expect(post.body).toMatchObject({
      inputs: [
        { path: "hello.txt", sha256: sha("hello") },
        { path: "data/train.csv", url: "https://data.example.org/train.csv", sha256: digest.toLowerCase() },
      ],
      disk: { work_mb: 4096, outputs_mb: 1024, tmp_mb: 256 },
      work_exec: true,
    });
  });

  it("quotes with the disk limits and the inputs' total size once files are dropped", { timeout: 10000 }, async () => {
    // given
    const user = userEvent.setup();
    const { calls } = renderRun();
    const quotes = () => calls.filter((c) => c.url === "/api/v1/quotes/").map((c) => c.body as Record<string, unknown>);
    await waitFor(() => expect(quotes()).toHaveLength(1));
    expect(quotes()[0]).toMatchObject({ inputs_bytes: 0 });
    expect(quotes()[0]).not.toHaveProperty("disk");
    // when two files are dropped and /work is raised
    drop([fileEntry(new File(["alpha,1\n"], "a.csv")), fileEntry(new File(["0123456789"], "b.bin"))]);
    await user.click(screen.getByText("Advanced: disk limits"));
    await user.clear(screen.getByLabelText("Space in /work (MB)"));
    await user.type(screen.getByLabelText("Space in /work (MB)"), "4096");
    // then the quote asks again with both
    await waitFor(() => expect(quotes().at(-1)).toMatchObject({ inputs_bytes: 18, disk: { work_mb: 4096, outputs_mb: 1024, tmp_mb: 256 } }), { timeout: 3000 });
  });

  it("quotes without the disk limits while one is not a number, and holds only the submit", { timeout: 10000 }, async () => {
    // given
    const user = userEvent.setup();
    const { calls } = renderRun();
    const quotes = () => calls.filter((c) => c.url === "/api/v1/quotes/").map((c) => c.body as Record<string, unknown>);
    await waitFor(() => expect(quotes()).toHaveLength(1));
    await user.click(screen.getByText("Advanced: disk limits"));
    await user.clear(screen.getByLabelText("Space in /work (MB)"));
    await user.type(screen.getByLabelText("Space in /work (MB)"), "4096");
    await waitFor(() => expect(quotes()).toHaveLength(2), { timeout: 3000 });
    expect(quotes()[1]).toMatchObject({ disk: { work_mb: 4096, outputs_mb: 1024, tmp_mb: 256 } });
    // when /tmp is not a number
    await user.clear(screen.getByLabelText("Space in /tmp (MB)"));
    await user.type(screen.getByLabelText("Space in /tmp (MB)"), "lots");
    // then the quote asks again without any disk limits, and a price is shown
    await waitFor(() => expect(quotes()).toHaveLength(3), { timeout: 3000 });
    expect(quotes()[2]).not.toHaveProperty("disk");
    expect(await screen.findByTestId("quote-estimate")).toBeInTheDocument();
    // and the submit names the problem and sends nothing
    await user.click(screen.getByRole("button", { name: "Run" }));
    expect(await screen.findByText(/Disk limits: Each disk limit is a whole number of MB, at least 1\./)).toBeInTheDocument();
    expect(calls.filter((c) => c.url === "/api/v1/jobs/")).toHaveLength(0);
  });

  it("shows the server's refusal of an input next to the inputs", async () => {
    const user = userEvent.setup();
    renderRun({
      held: new Set([sha("mine")]),
      submit: () => json(400, { error: { code: "unknown_blob", message: "inputs[0].sha256: not one of your blobs", fields: { "inputs[0].sha256": ["not one of your blobs"] } } }),
    });
    await user.upload(screen.getByTestId("inputs-files"), new File(["mine"], "mine.txt"));
    await waitFor(() => expect(rowOf("mine.txt")).toHaveTextContent("✓ Already stored"));
    await user.click(screen.getByRole("button", { name: "Run" }));
    expect(await screen.findByText("not one of your blobs", { selector: "#inputs-error" })).toBeInTheDocument();
  });
});

describe("the Run page's zip as the code", () => {
  const zipRow = () => screen.getByTestId("zip-row");
  const zipBytes = new Uint8Array(3 * 1024).map((_, i) => (i * 7) % 256);

  it("uploads the zip with tus (progress, pause, resume), holds the submit until it is stored, and sends archive_sha256 with the inputs", { timeout: 20000 }, async () => {
    // given an input file, already uploaded
    const user = userEvent.setup();
    const { calls } = renderRun();
    await user.upload(screen.getByTestId("inputs-files"), new File(["hello"], "hello.txt"));
    await waitFor(() => expect(rowOf("hello.txt")).toHaveTextContent("✓ Uploaded"), { timeout: 5000 });
    // when a zip is picked as the code, with the server holding its PATCH
    tus.hold();
    await user.upload(screen.getByLabelText(/^Files \(/), new File([zipBytes], "code.zip", { type: "application/zip" }));
    // then the page says what runs, and shows the zip's upload
    expect(screen.getByTestId("code-source")).toHaveTextContent(
      "A zip is uploaded: main.py from inside the zip runs, with the zip's other files. The editor's code is not sent.",
    );
    expect(await screen.findByRole("progressbar", { name: "Uploading code.zip" }, { timeout: 5000 })).toBeInTheDocument();
    await waitFor(() => expect(zipRow()).toHaveTextContent("Uploading 50%"));
    const run = screen.getByRole("button", { name: "Run" });
    expect(run).toBeDisabled();
    expect(screen.getByTestId("uploads-wait")).toHaveTextContent("Waiting for the zip to finish uploading.");
    // and no inline refusal of inputs beside a zip
    expect(screen.queryByText(/Inputs can't go with a zip/)).toBeNull();
    // when paused and resumed, it goes on from the server's offset
    await user.click(screen.getByRole("button", { name: "Pause code.zip" }));
    expect(zipRow()).toHaveTextContent("Paused (uploading 50%)");
    act(() => tus.release());
    await user.click(screen.getByRole("button", { name: "Resume code.zip" }));
    await waitFor(() => expect(zipRow()).toHaveTextContent("✓ Uploaded"), { timeout: 5000 });
    const create = calls.filter((c) => c.url === "/api/v1/uploads/").find((c) => c.headers.get("Upload-Metadata")!.includes(b64("code.zip")))!;
    expect(create.headers.get("Upload-Metadata")).toBe(`sha256 ${b64(sha(zipBytes))},filename ${b64("code.zip")}`);
    // and the quote counts the zip with the inputs
    await waitFor(() => expect(calls.filter((c) => c.url === "/api/v1/quotes/").at(-1)!.body).toMatchObject({ inputs_bytes: 5 + zipBytes.length }));
    // when submitted
    expect(run).toBeEnabled();
    await user.click(run);
    await screen.findByText("job page");
    // then as JSON: the zip by its digest, the entrypoint and the inputs; no code, files or multipart
    const post = calls.find((c) => c.url === "/api/v1/jobs/")!;
    expect(post.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(post.body).toMatchObject({ archive_sha256: sha(zipBytes), entrypoint: "main.py", inputs: [{ path: "hello.txt", sha256: sha("hello") }] });
    expect(post.body).not.toHaveProperty("code");
    expect(post.body).not.toHaveProperty("files");
  });

  it("sends nothing of a zip when the server answers that the user already holds it", async () => {
    // given a server whose creation says: complete, nothing to send
    const user = userEvent.setup();
    const { calls } = renderRun({
      create: (call) => {
        const length = Number(call.headers.get("Upload-Length"));
        return json(201, { id: "u", offset: length, length, sha256: sha(zipBytes), status: "complete" }, { Location: "/api/v1/uploads/u/", "Upload-Offset": String(length) });
      },
    });
    // when
    await user.upload(screen.getByLabelText(/^Files \(/), new File([zipBytes], "code.zip", { type: "application/zip" }));
    // then
    await waitFor(() => expect(zipRow()).toHaveTextContent("✓ Already stored: nothing to send"), { timeout: 5000 });
    expect(tus.calls).toHaveLength(0);
    await user.click(screen.getByRole("button", { name: "Run" }));
    await screen.findByText("job page");
    expect(calls.find((c) => c.url === "/api/v1/jobs/")!.body).toMatchObject({ archive_sha256: sha(zipBytes) });
  });

  it("shows the server's refusal of the zip at the Files field, as a sentence", async () => {
    const user = userEvent.setup();
    renderRun({
      held: new Set([sha(zipBytes)]),
      submit: () =>
        json(400, {
          error: { code: "unknown_blob", message: "you hold no blob with that archive_sha256", fields: { archive_sha256: ["you hold no blob with this sha256: upload it first"] } },
        }),
    });
    await user.upload(screen.getByLabelText(/^Files \(/), new File([zipBytes], "code.zip", { type: "application/zip" }));
    await waitFor(() => expect(zipRow()).toHaveTextContent("✓ Already stored"), { timeout: 5000 });
    await user.click(screen.getByRole("button", { name: "Run" }));
    const sentence = "The zip is not among your stored files (it was deleted, or its upload did not finish): remove it and pick it again.";
    await waitFor(() => expect(screen.getByLabelText(/^Files \(/)).toHaveAccessibleDescription(expect.stringContaining(sentence)));
    expect(screen.getByLabelText(/^Files \(/)).toHaveAttribute("aria-invalid", "true");
    expect(screen.queryByText(/An input names a file/)).toBeNull();
  });

  it("stops the zip's upload when it is removed from the files", async () => {
    const user = userEvent.setup();
    renderRun();
    tus.hold();
    await user.upload(screen.getByLabelText(/^Files \(/), new File([zipBytes], "code.zip", { type: "application/zip" }));
    await screen.findByRole("progressbar", { name: "Uploading code.zip" }, { timeout: 5000 });
    await user.click(screen.getByRole("button", { name: "Remove code.zip" }));
    expect(screen.queryByTestId("zip-row")).toBeNull();
    expect(screen.queryByTestId("code-source")).toBeNull();
    expect(screen.getByRole("button", { name: "Run" })).toBeEnabled();
    act(() => tus.release());
    // and the server's upload is deleted
    await waitFor(() => expect(tus.calls.map((c) => c.method)).toContain("DELETE"));
    expect(tus.uploads.size).toBe(0);
  });
});
