import { fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { axisLabels, Chart } from "./Chart";

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

describe("axis labels", () => {
  it("drops labels that would touch or repeat the one after them", () => {
    // 25 s and 25 s (two reports in the same second), and 30 s just beside them
    const shown = axisLabels([
      { at: 100, label: "0 s" },
      { at: 400, label: "25 s" },
      { at: 402, label: "25 s" },
      { at: 420, label: "30 s" },
      { at: 600, label: "1 min 0 s" },
    ]);
    expect([...shown].sort()).toEqual([0, 3, 4]);
  });
});
