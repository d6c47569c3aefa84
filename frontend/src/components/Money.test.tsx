import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Money } from "./Money";

describe("Money", () => {
  it("shows credits and keeps the exact micro-credits for the tooltip only", () => {
    render(
      <p data-testid="amount">
        <Money micros={125_997_798} />
      </p>,
    );
    const amount = screen.getByTestId("amount");
    expect(amount).toHaveTextContent("125.99 cr");
    expect(amount.textContent).not.toContain("125997798");
    expect(screen.getByTitle("125,997,798 micro-credits")).toHaveAttribute("data-micros", "125997798");
  });

  it("shows a dash and no tooltip for no amount, and a tiny amount as non-zero", () => {
    const { container } = render(
      <>
        <Money micros={null} />
        <Money micros={3} suffix="/hour" />
      </>,
    );
    const [none, tiny] = container.querySelectorAll(".money");
    expect(none).toHaveTextContent("—");
    expect(none).not.toHaveAttribute("title");
    expect(tiny).toHaveTextContent("0.000003 cr/hour");
  });
});
