import { formatCredits, microsTitle } from "../lib/money";

/** An amount as people read it ("12.35 cr"), the exact micro-credits in its tooltip. */
export function Money({ micros, suffix = "" }: { micros: number | null | undefined; suffix?: string }) {
  const title = microsTitle(micros);
  return (
    <span className="money" title={title || undefined} data-micros={title ? Math.trunc(micros as number) : undefined}>
      {/* a no-break space keeps "0.0087 cr" on one line */}
      {formatCredits(micros).replace(" ", "\u00a0")}
      {suffix}
    </span>
  );
}
