import { useEffect, useMemo, useRef, useState, useSyncExternalStore, type DragEvent } from "react";
import { Link } from "react-router";
import { filesFromDrop, filesFromPicker } from "../lib/dropFiles";
import { formatBytes } from "../lib/files";
import { InputUploads, inputStateText, inputsSummary, type InputItem } from "../lib/inputUploads";
import type { UrlInput } from "../lib/jobSpec";
import { uuid4 } from "../lib/uuid";

/** One of the Run page's upload stores (the inputs, the zip as the code): one store for the
 * page's life, its work stopped when the page goes. */
export function useUploads(): { uploads: InputUploads; items: InputItem[] } {
  const uploads = useMemo(() => new InputUploads(), []);
  useEffect(() => {
    uploads.attach();
    return () => uploads.detach();
  }, [uploads]);
  const items = useSyncExternalStore(uploads.subscribe, uploads.snapshot);
  return { uploads, items };
}

interface UploadRowProps {
  item: InputItem;
  uploads: InputUploads;
  /** What Remove does; by default it drops the file from `uploads`. */
  onRemove?: () => void;
  testId?: string;
}

/** One file's upload: its state in words, progress, pause/resume, retry and remove. */
export function UploadRow({ item, uploads, onRemove, testId = "input-row" }: UploadRowProps) {
  const working = item.status !== "done" && item.status !== "failed";
  const progress = item.status === "hashing" || (item.status === "waiting" && item.hashed > 0) ? item.hashed : item.status === "uploading" || item.status === "queued" ? item.sent : null;
  const what = item.status === "hashing" || item.status === "waiting" ? "Hashing" : "Uploading";
  return (
    <li data-testid={testId} className={`input-row input-${item.status}`}>
      <span className="input-name">
        <code>{item.path}</code> <span className="muted">{formatBytes(item.size)}</span>
      </span>
      <span className="input-state" data-testid="input-state">
        {item.status === "done" ? "✓ " : item.status === "failed" ? "✕ " : ""}
        {inputStateText(item)}
      </span>
      {progress !== null && working && (
        <progress max={Math.max(item.size, 1)} value={item.size ? progress : 1} aria-label={`${what} ${item.path}`} />
      )}
      {item.error && (
        <span className="field-error" role="alert">
          {item.error}
          {item.code === "quota_exceeded" && (
            <>
              {" "}
              <Link to="/wallet#storage">Your stored files</Link>
            </>
          )}
        </span>
      )}
      <span className="input-actions">
        {working && !item.paused && item.status !== "checking" && (
          <button type="button" className="link-button" onClick={() => uploads.pause(item.id)} aria-label={`Pause ${item.path}`}>
            Pause
          </button>
        )}
        {working && item.paused && (
          <button type="button" className="link-button" onClick={() => uploads.resume(item.id)} aria-label={`Resume ${item.path}`}>
            Resume
          </button>
        )}
        {item.status === "failed" && (
          <button type="button" className="link-button" onClick={() => uploads.retry(item.id)} aria-label={`Retry ${item.path}`}>
            Retry
          </button>
        )}
        <button type="button" className="link-button" onClick={onRemove ?? (() => uploads.remove(item.id))} aria-label={`Remove ${item.path}`}>
          Remove
        </button>
      </span>
    </li>
  );
}

function UrlRow({ row, index, onChange, onRemove }: { row: UrlInput; index: number; onChange: (row: UrlInput) => void; onRemove: () => void }) {
  const id = `url-input-${row.key}`;
  return (
    <fieldset className="url-input" data-testid="url-input">
      <legend>Input by URL {index + 1}</legend>
      <label htmlFor={`${id}-path`}>Path in /inputs</label>
      <input id={`${id}-path`} className="mono" value={row.path} placeholder="data/train.csv" onChange={(e) => onChange({ ...row, path: e.target.value })} />
      <label htmlFor={`${id}-url`}>URL (https)</label>
      <input id={`${id}-url`} className="mono" type="url" value={row.url} placeholder="https://data.example.org/train.csv" onChange={(e) => onChange({ ...row, url: e.target.value })} />
      <label htmlFor={`${id}-sha`}>sha256 of the file</label>
      <input id={`${id}-sha`} className="mono" value={row.sha256} spellCheck={false} onChange={(e) => onChange({ ...row, sha256: e.target.value })} />
      <button type="button" className="link-button" onClick={onRemove} aria-label={`Remove input by URL ${index + 1}`}>
        Remove
      </button>
    </fieldset>
  );
}

interface Props {
  uploads: InputUploads;
  items: InputItem[];
  urlRows: UrlInput[];
  onUrlRows: (rows: UrlInput[]) => void;
  error?: string;
  /** What the panel is called (a group's inputs are every task's). */
  legend?: string;
}

/**
 * The Run page's inputs, mounted read-only at /inputs: files and folders dropped or picked
 * (hashed, then uploaded unless already stored), and files the host fetches from a URL.
 */
export function InputsPanel({ uploads, items, urlRows, onUrlRows, error, legend = "Inputs (read-only in /inputs)" }: Props) {
  const filesRef = useRef<HTMLInputElement>(null);
  const folderRef = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  const summary = inputsSummary(items);
  const anyPaused = items.some((item) => item.paused);
  const anyRunning = items.some((item) => !item.paused && item.status !== "done" && item.status !== "failed" && item.status !== "checking");

  const onDrop = (event: DragEvent<HTMLDivElement>) => {
    event.preventDefault();
    setOver(false);
    void filesFromDrop(event.dataTransfer).then((files) => uploads.add(files));
  };
  const onPick = (input: HTMLInputElement | null) => {
    if (!input?.files?.length) return;
    uploads.add(filesFromPicker(input.files));
    input.value = "";
  };

  return (
    <fieldset className={`inputs${error ? " field-invalid" : ""}`} aria-describedby={error ? "inputs-error" : undefined}>
      <legend>{legend}</legend>
      <div
        className={`dropzone${over ? " dropzone-over" : ""}`}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={onDrop}
      >
        <p>Drop files or folders here (up to 5 GB each), or</p>
        <button type="button" onClick={() => filesRef.current?.click()}>
          Choose files
        </button>{" "}
        <button type="button" onClick={() => folderRef.current?.click()}>
          Choose a folder
        </button>
        <input ref={filesRef} type="file" multiple hidden data-testid="inputs-files" aria-label="Input files" onChange={(e) => onPick(e.currentTarget)} />
        <input
          ref={(el) => {
            folderRef.current = el;
            el?.setAttribute("webkitdirectory", "");
          }}
          type="file"
          hidden
          data-testid="inputs-folder"
          aria-label="Input folder"
          onChange={(e) => onPick(e.currentTarget)}
        />
      </div>
      {error && (
        <p id="inputs-error" className="field-error" role="alert">
          {error}
        </p>
      )}
      {items.length > 0 && (
        <>
          <div className="inputs-head">
            <p role="status" data-testid="inputs-summary">
              {summary.done} of {summary.total} file{summary.total === 1 ? "" : "s"} ready ({formatBytes(summary.bytes)})
              {summary.failed > 0 && `; ${summary.failed} failed`}.
            </p>
            {anyRunning && (
              <button type="button" onClick={() => uploads.pauseAll()}>
                Pause all
              </button>
            )}
            {anyPaused && (
              <button type="button" onClick={() => uploads.resumeAll()}>
                Resume all
              </button>
            )}
          </div>
          <ul className="input-list" aria-label="Input files">
            {items.map((item) => (
              <UploadRow key={item.id} item={item} uploads={uploads} />
            ))}
          </ul>
        </>
      )}
      {urlRows.map((row, index) => (
        <UrlRow
          key={row.key}
          row={row}
          index={index}
          onChange={(changed) => onUrlRows(urlRows.map((r) => (r.key === row.key ? changed : r)))}
          onRemove={() => onUrlRows(urlRows.filter((r) => r.key !== row.key))}
        />
      ))}
      <button type="button" onClick={() => onUrlRows([...urlRows, { key: uuid4(), path: "", url: "", sha256: "" }])}>
        Add by URL
      </button>
      <small className="hint">The host fetches a URL input itself and checks its sha256 before the job starts.</small>
    </fieldset>
  );
}
