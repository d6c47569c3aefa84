import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { IsolationWarning } from "./IsolationWarning";

describe("IsolationWarning", () => {
  it("says in words (not only in red) that a host runs jobs without isolation", () => {
    render(<IsolationWarning isolation="none" />);
    const note = screen.getByTestId("isolation-warning");
    expect(note).toHaveTextContent("Runs jobs without isolation");
    expect(note).toHaveClass("isolation-warning");
  });

  it("shows nothing for an isolated host or one not known yet", () => {
    const { container } = render(
      <>
        <IsolationWarning isolation="docker" />
        <IsolationWarning isolation="" />
        <IsolationWarning isolation={undefined} />
      </>,
    );
    expect(container).toBeEmptyDOMElement();
  });
});
