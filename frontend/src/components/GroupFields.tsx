import { useState, type DragEvent } from "react";
import { JOB_GROUP_MAX_PARALLEL, JOB_GROUP_MAX_RETRIES, JOB_GROUP_MAX_TASKS, type ArgumentsRead, type GroupForm } from "../lib/groupSpec";
import { Field } from "./Field";

interface Props {
  group: GroupForm;
  onChange: (update: (group: GroupForm) => GroupForm) => void;
  read: ArgumentsRead;
  errorFor: (field: string) => string | undefined;
}

/** What the text area holds, in words: how many tasks, read how. */
function argumentsSummary(read: ArgumentsRead): string {
  if (!read.ok) return "";
  const n = read.arguments.length;
  return `${n.toLocaleString("en")} task${n === 1 ? "" : "s"}, ${read.format === "array" ? "one per item of the array" : "one per line"}.`;
}

/**
 * The Run page's group fields: the tasks (their arguments as JSON Lines or a JSON array, typed,
 * dropped or picked as a .jsonl or .json file; or a count), how many run at once, the retries.
 */
export function GroupFields({ group, onChange, read, errorFor }: Props) {
  const [over, setOver] = useState(false);
  const [fileProblem, setFileProblem] = useState<string | null>(null);
  const set = <K extends keyof GroupForm>(key: K, value: GroupForm[K]) => onChange((g) => ({ ...g, [key]: value }));

  const load = async (file: File | undefined) => {
    if (!file) return;
    setFileProblem(null);
    try {
      const text = await file.text();
      onChange((g) => ({ ...g, tasks: "arguments", argumentsText: text }));
    } catch {
      setFileProblem(`${file.name} could not be read; pick it again.`);
    }
  };
  const onDrop = (event: DragEvent<HTMLDivElement>) => {
    event.preventDefault();
    setOver(false);
    void load(event.dataTransfer.files[0]);
  };

  return (
    <fieldset className="group-fields">
      <legend>Tasks</legend>
      <div className="field checkbox">
        <label>
          <input type="radio" name="group-tasks" checked={group.tasks === "arguments"} onChange={() => set("tasks", "arguments")} /> One task per
          argument
        </label>
        <label>
          <input type="radio" name="group-tasks" checked={group.tasks === "count"} onChange={() => set("tasks", "count")} /> A number of tasks, without
          arguments
        </label>
      </div>
      {group.tasks === "arguments" ? (
        <div
          className={`arguments-drop${over ? " dropzone-over" : ""}`}
          data-testid="arguments-drop"
          onDragOver={(e) => {
            e.preventDefault();
            setOver(true);
          }}
          onDragLeave={() => setOver(false)}
          onDrop={onDrop}
        >
          <Field
            label="Task arguments (JSON Lines, or a JSON array)"
            error={errorFor("task_arguments") ?? fileProblem ?? undefined}
            hint={
              <>
                One task per line (or per item of an array); drop a .jsonl file here. Task #N reads its argument at <code>/inputs/task.json</code>{" "}
                and gets <code>COMMUNIPUTE_TASK_INDEX</code> (N, from 0) and <code>COMMUNIPUTE_TASK_COUNT</code>.
              </>
            }
          >
            <textarea
              className="mono"
              rows={6}
              spellCheck={false}
              value={group.argumentsText}
              placeholder={'{"seed": 1}\n{"seed": 2}'}
              onChange={(e) => set("argumentsText", e.target.value)}
            />
          </Field>
          <Field label="Or load them from a file (.jsonl or .json)">
            <input type="file" accept=".jsonl,.json,.ndjson,application/json,application/x-ndjson" onChange={(e) => void load(e.target.files?.[0])} />
          </Field>
          <p className="small" role="status" data-testid="arguments-summary">
            {argumentsSummary(read)}
          </p>
        </div>
      ) : (
        <Field label="Number of tasks" error={errorFor("count")} hint={`1 to ${JOB_GROUP_MAX_TASKS.toLocaleString("en")}; each gets its index (from 0) in COMMUNIPUTE_TASK_INDEX.`}>
          <input type="number" min={1} max={JOB_GROUP_MAX_TASKS} step={1} inputMode="numeric" value={group.count} onChange={(e) => set("count", e.target.value)} />
        </Field>
      )}
      <Field label="Tasks at once" error={errorFor("max_parallel")} hint={`At most this many tasks hold their cap at once (1 to ${JOB_GROUP_MAX_PARALLEL}).`}>
        <input type="number" min={1} max={JOB_GROUP_MAX_PARALLEL} step={1} inputMode="numeric" value={group.maxParallel} onChange={(e) => set("maxParallel", e.target.value)} />
      </Field>
      <details className="advanced" open={Boolean(errorFor("host_fault_retries") ?? errorFor("error_retries"))}>
        <summary>Advanced: retries</summary>
        <Field label="Retries after a host fault" error={errorFor("host_fault_retries")} hint="A task a machine lost runs again on another one, this many times.">
          <input type="number" min={0} max={JOB_GROUP_MAX_RETRIES} step={1} inputMode="numeric" value={group.hostFaultRetries} onChange={(e) => set("hostFaultRetries", e.target.value)} />
        </Field>
        <Field label="Retries after a script error" error={errorFor("error_retries")} hint="A task whose script failed or timed out runs again this many times (it is a result otherwise).">
          <input type="number" min={0} max={JOB_GROUP_MAX_RETRIES} step={1} inputMode="numeric" value={group.errorRetries} onChange={(e) => set("errorRetries", e.target.value)} />
        </Field>
      </details>
    </fieldset>
  );
}
