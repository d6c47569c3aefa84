import { fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Chart } from "./Chart";

describe("Chart", () => {
  it("is a labelled image whose points can be read with the arrow keys", () => {
    render(
      <Chart
        title="Revenue"
        series={[{ name: "Fees", points: [{ x: 1, y: 10, label: "05-01" }, { x: 2, y: 30, label: "05-02" }] }]}
      />,
    );
    const svg = screen.getByRole("img");
    expect(svg.getAttribute("aria-label")).toContain("Revenue. 2 points from 05-01 to 05-02.");
    fireEvent.keyDown(svg, { key: "ArrowRight" });
    expect(screen.getByText("05-01: Fees 10")).toBeInTheDocument();
    fireEvent.keyDown(svg, { key: "End" });
    expect(screen.getByText("05-02: Fees 30")).toBeInTheDocument();
  });

  it("says so when there is nothing to draw", () => {
    render(<Chart title="Earnings" series={[{ name: "Earned", points: [] }]} emptyText="No earnings yet." />);
    expect(screen.getByText("No earnings yet.")).toBeInTheDocument();
    expect(screen.queryByRole("img")).toBeNull();
  });
});
