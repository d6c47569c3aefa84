import { describe, expect, it } from "vitest";
import { creditsText, creditsToMicros, creditsWords, formatCredits, microsTitle, microsToCredits, microsToInput } from "./money";

describe("money", () => {
  it("parses credits to integer micros without floats", () => {
    expect(creditsToMicros("12.5")).toBe(12_500_000);
    expect(creditsToMicros("0.000001")).toBe(1);
    expect(creditsToMicros("0,1")).toBe(100_000);
    expect(creditsToMicros("3")).toBe(3_000_000);
    expect(creditsToMicros("1.0000001")).toBeNull();
    expect(creditsToMicros("-1")).toBeNull();
    expect(creditsToMicros("abc")).toBeNull();
  });

  it("formats micros", () => {
    expect(microsToCredits(12_500_000)).toBe("12.50");
    expect(microsToCredits(1)).toBe("0.000001");
    expect(microsToCredits(-2_340_000)).toBe("-2.34");
    expect(microsToCredits(1_234_000_000)).toBe("1,234.00");
    expect(formatCredits(null)).toBe("—");
  });

  it("shows every amount through one formatter: two decimals from one credit up", () => {
    expect(formatCredits(12_350_000)).toBe("12.35 cr");
    expect(formatCredits(100_000_000)).toBe("100.00 cr");
    expect(formatCredits(1_234_567_890)).toBe("1,234.56 cr");
    // cut toward zero, never rounded up: a balance is never shown larger than it is
    expect(formatCredits(125_997_798)).toBe("125.99 cr");
    expect(formatCredits(-2_349_999)).toBe("-2.34 cr");
  });

  it("gives small amounts two significant digits and never shows zero for a non-zero amount", () => {
    expect(formatCredits(100_000)).toBe("0.10 cr");
    expect(formatCredits(12_345)).toBe("0.012 cr");
    expect(formatCredits(1_234)).toBe("0.0012 cr");
    expect(formatCredits(1_000)).toBe("0.001 cr");
    expect(formatCredits(5)).toBe("0.000005 cr");
    expect(formatCredits(1)).toBe("0.000001 cr");
    expect(formatCredits(-40)).toBe("-0.00004 cr");
    expect(formatCredits(0)).toBe("0.00 cr");
    for (let micros = 1; micros < 1_000_000; micros = micros * 3 + 1) {
      expect(creditsText(micros)).not.toMatch(/^0\.0+$/);
    }
    expect(formatCredits(undefined)).toBe("—");
  });

  it("puts the exact micro-credits in the tooltip, words in sentences, exact text in inputs", () => {
    expect(microsTitle(125_997_798)).toBe("125,997,798 micro-credits");
    expect(creditsWords(5_000_000_000)).toBe("5,000 credits");
    expect(creditsWords(125_997_798)).toBe("125.99 credits");
    expect(creditsWords(1_000_000)).toBe("1 credit");
    expect(microsToInput(1_234_500_000)).toBe("1234.50");
    expect(creditsToMicros(microsToInput(1_234_500_001))).toBe(1_234_500_001);
  });
});
