import { formatCredits, microsTitle } from "../lib/money";

/** An amount as people read it ("12.35 cr"), the exact micro-credits in its tooltip. */
export function Money({ micros, suffix = "" }: { micros: number | null | undefined; suffix?: string }) {
  const title = microsTitle(micros);
  return (
    <span className="money" title={title || undefined} data-micros={title ? Math.trunc(micros as number) : undefined}>
      {formatCredits(micros)}
      {suffix}
    </span>
  );
}
