// Files a person drops or picks, each with the path it will have under /inputs: a dropped
// folder keeps its name and inner folders ("data/train/a.csv"), as a folder picker does.

export interface PickedFile {
  path: string;
  file: File;
}

/** The parts of the File and Directory Entries API the drop handler uses (Chrome, Firefox, Safari). */
interface Entry {
  isFile: boolean;
  isDirectory: boolean;
  name: string;
  fullPath: string;
}
interface FileEntry extends Entry {
  file(success: (file: File) => void, failure?: (err: unknown) => void): void;
}
interface DirectoryEntry extends Entry {
  createReader(): { readEntries(success: (entries: Entry[]) => void, failure?: (err: unknown) => void): void };
}

function entryFile(entry: FileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

/** Every entry of a folder: readEntries answers in batches (100 in Chrome) until an empty one. */
async function directoryEntries(entry: DirectoryEntry): Promise<Entry[]> {
  const reader = entry.createReader();
  const all: Entry[] = [];
  for (;;) {
    const batch = await new Promise<Entry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return all;
    all.push(...batch);
  }
}

async function entryFiles(entry: Entry, prefix: string): Promise<PickedFile[]> {
  const path = prefix ? `${prefix}/${entry.name}` : entry.name;
  if (entry.isFile) return [{ path, file: await entryFile(entry as FileEntry) }];
  if (!entry.isDirectory) return [];
  const children = await directoryEntries(entry as DirectoryEntry);
  const nested = await Promise.all(children.map((child) => entryFiles(child, path)));
  return nested.flat();
}

/**
 * The files of a drop, folders walked recursively. The entries are taken synchronously, while
 * the drop event lasts (the browser empties the DataTransfer after it); reading them is async.
 */
export function filesFromDrop(data: DataTransfer): Promise<PickedFile[]> {
  const entries: Entry[] = [];
  const loose: File[] = [];
  for (const item of Array.from(data.items ?? [])) {
    if (item.kind !== "file") continue;
    const entry = (item as DataTransferItem & { webkitGetAsEntry?: () => Entry | null }).webkitGetAsEntry?.();
    if (entry) entries.push(entry);
    else {
      const file = item.getAsFile();
      if (file) loose.push(file);
    }
  }
  if (!entries.length && !loose.length) loose.push(...Array.from(data.files ?? []));
  return Promise.all(entries.map((entry) => entryFiles(entry, ""))).then((nested) => [
    ...nested.flat(),
    ...loose.map((file) => ({ path: file.name, file })),
  ]);
}

/** The files of a file or folder picker; a folder picker gives each its path inside the folder. */
export function filesFromPicker(list: FileList | File[]): PickedFile[] {
  return Array.from(list).map((file) => ({
    path: (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name,
    file,
  }));
}

/** Why a path can't be used under /inputs (jobs.validation.path_clean's rules), or null. */
export function inputPathProblem(path: string): string | null {
  if (!path || path.length > 255) return "A path of 1 to 255 characters.";
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path) || path.includes("\\")) return "No control characters or backslashes.";
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "A relative path under /inputs, such as data/train.csv.";
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) return "The path must not contain “..”.";
  if (!parts.length) return "Name a file, not only folders.";
  if (parts.length > 16) return "At most 16 folders deep.";
  return null;
}
