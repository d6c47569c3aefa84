// A host that runs jobs without isolation (its agent has no container runtime: the process
// runtime) takes only its owner's jobs; wherever such a host appears, say so in red, in words.

export function IsolationWarning({ isolation, compact = false }: { isolation: string | null | undefined; compact?: boolean }) {
  if (isolation !== "none") return null;
  return (
    <span className="isolation-warning" role="note" data-testid="isolation-warning">
      <span aria-hidden="true">⚠ </span>
      {compact ? "No isolation" : "Runs jobs without isolation (no container): only its owner's jobs go there, and they can reach the machine."}
    </span>
  );
}
