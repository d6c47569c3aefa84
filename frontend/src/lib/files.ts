export interface UploadedFile {
  path: string;
  size: number;
  content_b64: string;
  isZip: boolean;
  /** The file itself: a zip travels as-is in a multipart body (`archive`). */
  blob: Blob;
}

/** Base64 of a file's bytes, chunked so large files do not blow the call stack. */
export async function fileToBase64(file: Blob): Promise<string> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode(...bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

export function textToBase64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export async function filesRead(list: FileList | File[]): Promise<UploadedFile[]> {
  const files = Array.from(list);
  return Promise.all(
    files.map(async (file) => ({
      path: (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name,
      size: file.size,
      content_b64: await fileToBase64(file),
      isZip: /\.zip$/i.test(file.name) || file.type === "application/zip",
      blob: file,
    })),
  );
}

export function formatBytes(size: number): string {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  if (size < 1024 * 1024 * 1024) return `${(size / 1024 / 1024).toFixed(1)} MB`;
  return `${(size / 1024 / 1024 / 1024).toFixed(2)} GB`;
}

export interface Multipart {
  body: Blob;
  contentType: string;
}

/**
 * A multipart/form-data body built by hand with a boundary derived from `seed`, so a retry
 * with the same Idempotency-Key sends the same bytes (the server compares a hash of the raw
 * body; FormData would pick a new random boundary each time).
 */
export function multipartBuild(
  fields: [string, string][],
  file: { name: string; filename: string; blob: Blob },
  seed: string,
): Multipart {
  const boundary = `----communipute-${seed.replace(/[^0-9A-Za-z]/g, "")}`;
  const quote = (text: string) => text.replace(/["\r\n]/g, "_");
  const parts: BlobPart[] = [];
  for (const [name, value] of fields) {
    parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="${quote(name)}"\r\n\r\n${value}\r\n`);
  }
  parts.push(
    `--${boundary}\r\nContent-Disposition: form-data; name="${quote(file.name)}"; filename="${quote(file.filename)}"\r\n` +
      "Content-Type: application/zip\r\n\r\n",
    file.blob,
    `\r\n--${boundary}--\r\n`,
  );
  return { body: new Blob(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}
