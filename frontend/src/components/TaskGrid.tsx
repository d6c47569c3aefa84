import { Link } from "react-router";
import type { GroupTask, TaskCounts } from "../api/types";
import { statusLabel, TASK_SHORT_TEXT, TASK_STATUSES, taskStatusLabel, taskTone, TONE_MARK } from "../lib/jobStatus";

/** What a task's tile says in full (its title, and words for a screen reader): the status, what
 * its job is doing while it runs, the exit code and the reason. */
export function taskDetail(task: GroupTask): string {
  const doing = task.status === "running" && task.job_status && task.job_status !== "running" ? `, its job is ${statusLabel(task.job_status).toLowerCase()}` : "";
  const exit = task.exit_code !== null ? `, exit code ${task.exit_code}` : "";
  const reason = task.reason && !task.reason.includes("exit code") ? `: ${task.reason}` : "";
  return `${taskStatusLabel(task.status)}${doing}${exit}${reason}`;
}

function TaskTile({ task }: { task: GroupTask }) {
  const tone = taskTone(task.status);
  // The tile shows a few words and a mark; a screen reader hears the whole sentence instead.
  const body = (
    <>
      <span className="task-index" aria-hidden="true">
        #{task.index}
      </span>
      <span className="task-state" aria-hidden="true">
        <span className="badge-mark">{TONE_MARK[tone]}</span> {TASK_SHORT_TEXT[task.status] ?? taskStatusLabel(task.status)}
        {task.exit_code !== null && <span className="task-exit"> · exit code {task.exit_code}</span>}
      </span>
      <span className="visually-hidden">
        Task #{task.index}: {taskDetail(task)}
      </span>
    </>
  );
  return (
    <li className={`task task-${tone} task-status-${task.status}`} data-testid="task" data-status={task.status}>
      {task.job_id !== null ? (
        <Link to={`/jobs/${task.job_id}`} title={`${taskDetail(task)}. Open its job (log and outputs).`}>
          {body}
        </Link>
      ) : (
        <span className="task-tile" title={`${taskDetail(task)}.`}>
          {body}
        </span>
      )}
    </li>
  );
}

interface GridProps {
  tasks: GroupTask[];
  label: string;
}

/** The tasks as tiles coloured by status, each with its status in words and a mark. */
export function TaskGrid({ tasks, label }: GridProps) {
  return (
    <ul className="task-grid" aria-label={label} data-testid="task-grid">
      {tasks.map((task) => (
        <TaskTile key={task.index} task={task} />
      ))}
    </ul>
  );
}

interface FilterProps {
  counts: TaskCounts;
  count: number;
  selected: string;
  onSelect: (status: string) => void;
}

/** All tasks, or those of one status: a button per status the group has (and the one chosen),
 * each with its count. `aria-pressed` says which is shown. */
export function TaskFilter({ counts, count, selected, onSelect }: FilterProps) {
  const shown = TASK_STATUSES.filter((status) => counts[status] > 0 || status === selected);
  return (
    <div className="task-filter" role="group" aria-label="Show tasks">
      <button type="button" aria-pressed={selected === ""} onClick={() => onSelect("")}>
        All <span className="count">{count}</span>
      </button>
      {shown.map((status) => (
        <button key={status} type="button" aria-pressed={selected === status} onClick={() => onSelect(status)} className={`filter-${taskTone(status)}`}>
          <span aria-hidden="true" className="badge-mark">
            {TONE_MARK[taskTone(status)]}
          </span>{" "}
          {taskStatusLabel(status)} <span className="count">{counts[status]}</span>
        </button>
      ))}
    </div>
  );
}
