// Money is an integer of micro-credits everywhere (1 credit = 1,000,000 µcr). These helpers
// convert to and from the decimal text people read and type without going through floats.

const MICROS_PER_CREDIT = 1_000_000;

/** "12.5" -> 12_500_000; null when the text is not a non-negative amount with ≤ 6 decimals. */
export function creditsToMicros(text: string): number | null {
  const match = /^\s*(\d{1,12})(?:[.,](\d{0,6}))?\s*$/.exec(text);
  if (!match) return null;
  const whole = Number(match[1]);
  const fraction = Number((match[2] ?? "").padEnd(6, "0"));
  return whole * MICROS_PER_CREDIT + fraction;
}

/** 12_500_000 -> "12.50"; keeps up to 6 decimals but never fewer than `minDecimals`. */
export function microsToCredits(micros: number, minDecimals = 2): string {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(Math.trunc(micros));
  const whole = Math.floor(abs / MICROS_PER_CREDIT);
  let fraction = String(abs % MICROS_PER_CREDIT).padStart(6, "0");
  while (fraction.length > minDecimals && fraction.endsWith("0")) fraction = fraction.slice(0, -1);
  const grouped = whole.toLocaleString("en-US");
  return fraction.length ? `${sign}${grouped}.${fraction}` : `${sign}${grouped}`;
}

/** Display form with the unit: "12.50 cr". */
export function formatCredits(micros: number | null | undefined, minDecimals = 2): string {
  if (micros === null || micros === undefined || Number.isNaN(micros)) return "—";
  return `${microsToCredits(micros, minDecimals)} cr`;
}

export function formatMemory(mb: number | null | undefined): string {
  if (mb === null || mb === undefined) return "—";
  if (mb >= 1024) return `${(mb / 1024).toFixed(mb % 1024 === 0 ? 0 : 1)} GB`;
  return `${mb} MB`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${rest} s`;
  return `${rest} s`;
}

export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function formatPercent(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "—";
  return `${(ratio * 100).toFixed(1)} %`;
}
