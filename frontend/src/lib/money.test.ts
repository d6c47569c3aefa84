import { describe, expect, it } from "vitest";
import { creditsToMicros, formatCredits, microsToCredits } from "./money";

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
    expect(formatCredits(100_000, 6)).toBe("0.100000 cr");
  });
});
