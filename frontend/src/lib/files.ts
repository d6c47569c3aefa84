export interface UploadedFile {
  path: string;
  size: number;
  /** The bytes for the submit's `files`; empty for a zip, which is not sent inline. */
  content_b64: string;
  isZip: boolean;
  /** The file itself: a zip is uploaded to the blob store (tus) and named by its sha256. */
  file: File;
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

function isZipFile(file: File): boolean {
  return /\.zip$/i.test(file.name) || file.type === "application/zip";
}

/** The picked files as the form holds them; a zip is not read here (it may be gigabytes). */
export async function filesRead(list: FileList | File[]): Promise<UploadedFile[]> {
  const files = Array.from(list);
  return Promise.all(
    files.map(async (file) => {
      const isZip = isZipFile(file);
      return {
        path: (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name,
        size: file.size,
        content_b64: isZip ? "" : await fileToBase64(file),
        isZip,
        file,
      };
    }),
  );
}

export function formatBytes(size: number): string {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  if (size < 1024 * 1024 * 1024) return `${(size / 1024 / 1024).toFixed(1)} MB`;
  return `${(size / 1024 / 1024 / 1024).toFixed(2)} GB`;
}
