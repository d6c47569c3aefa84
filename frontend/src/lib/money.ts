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

/** Exact and ungrouped, for an input's value: 1_234_500_000 -> "1234.50" (creditsToMicros reads it back). */
export function microsToInput(micros: number): string {
  return microsToCredits(micros, 2).replace(/,/g, "");
}

/**
 * The one display form of an amount, without the unit. From one credit up: two decimals
 * ("12.35"); below one credit: two significant digits, up to six decimals ("0.0012",
 * "0.000005"), so a small amount never reads as zero. Cut toward zero, never rounded up: a
 * balance is never shown larger than it is. The exact micro-credits go in a tooltip (`Money`).
 */
export function creditsText(micros: number): string {
  const abs = Math.abs(Math.trunc(micros));
  if (abs === 0) return "0.00";
  const sign = micros < 0 ? "-" : "";
  const whole = Math.floor(abs / MICROS_PER_CREDIT);
  const digits = String(abs % MICROS_PER_CREDIT).padStart(6, "0");
  let decimals = 2;
  if (whole === 0) {
    const firstSignificant = digits.search(/[1-9]/) + 1; // 1..6
    decimals = Math.min(6, Math.max(2, firstSignificant + 1));
  }
  let fraction = digits.slice(0, decimals);
  while (fraction.length > 2 && fraction.endsWith("0")) fraction = fraction.slice(0, -1);
  return `${sign}${whole.toLocaleString("en-US")}.${fraction}`;
}

/** Display form with the unit: "12.35 cr", "—" for no amount. */
export function formatCredits(micros: number | null | undefined): string {
  if (micros === null || micros === undefined || Number.isNaN(micros)) return "—";
  return `${creditsText(micros)} cr`;
}

/** In words, for sentences: "125.99 credits", "1 credit". */
export function creditsWords(micros: number): string {
  const text = creditsText(micros);
  return `${text.replace(/\.00$/, "")} ${text === "1.00" || text === "-1.00" ? "credit" : "credits"}`;
}

/** The exact amount, for a tooltip: "12,345,678 micro-credits". */
export function microsTitle(micros: number | null | undefined): string {
  if (micros === null || micros === undefined || Number.isNaN(micros)) return "";
  return `${Math.trunc(micros).toLocaleString("en-US")} micro-credits`;
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
