import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import type { LogBuffer } from "../lib/logBuffer";

const MAX_NODES = 400;

/**
 * The live log. role="log" makes screen readers announce appended text politely; each
 * appended chunk is its own node so only the new text is read.
 */
export function LogView({ buffer, label = "Job log" }: { buffer: LogBuffer; label?: string }) {
  const version = useSyncExternalStore(
    (cb) => buffer.subscribe(cb),
    () => buffer.version,
  );
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);

  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [version, follow]);

  const chunks = buffer.chunks;
  const head = chunks.length > MAX_NODES ? chunks.slice(0, chunks.length - MAX_NODES).join("") : null;
  const tail = chunks.length > MAX_NODES ? chunks.slice(chunks.length - MAX_NODES) : chunks;

  return (
    <div className="log-view">
      <div className="log-toolbar">
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow
          output
        </label>
        <span className="muted small">
          {buffer.attempt && buffer.attempt > 1 ? `attempt ${buffer.attempt}, ` : ""}
          {buffer.end.toLocaleString()} bytes
        </span>
      </div>
      <pre
        ref={pre}
        className="log"
        role="log"
        aria-live="polite"
        aria-label={label}
        tabIndex={0}
        data-testid="log"
      >
        {head !== null && <span>{head}</span>}
        {tail.map((chunk, i) => (
          <span key={chunks.length - tail.length + i}>{chunk}</span>
        ))}
        {chunks.length === 0 && <span className="muted">No output yet.</span>}
      </pre>
    </div>
  );
}
