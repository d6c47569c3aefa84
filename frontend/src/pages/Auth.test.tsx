import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { describe, expect, it } from "vitest";
import { AuthProvider } from "../auth";
import { json, mockFetch } from "../test/fetchMock";
import { SignupPage } from "./Auth";

function renderSignup() {
  return render(
    <MemoryRouter initialEntries={["/signup"]}>
      <AuthProvider>
        <SignupPage />
      </AuthProvider>
    </MemoryRouter>,
  );
}

const anonymous = {
  "GET /api/v1/auth/csrf/": () => json(200, { csrf_token: "x" }),
  "GET /api/v1/auth/me/": () => json(403, { error: { code: "not_authenticated", message: "Log in.", fields: {} } }),
};

async function fillAndSubmit() {
  const user = userEvent.setup();
  await user.type(screen.getByLabelText("Username"), "alice");
  await user.type(screen.getByLabelText("Email"), "alice@example.com");
  await user.type(screen.getByLabelText("Password"), "pw");
  await user.click(screen.getByRole("button", { name: "Sign up" }));
}

describe("API errors on forms", () => {
  it("shows each field's error next to that field, and no banner", async () => {
    // given the API refuses two fields
    const { calls } = mockFetch({
      ...anonymous,
      "POST /api/v1/auth/signup/": () =>
        json(400, {
          error: {
            code: "invalid",
            message: "username: A user with that username already exists.",
            fields: {
              username: ["A user with that username already exists."],
              password: ["This password is too short.", "This password is too common."],
            },
          },
        }),
    });
    renderSignup();
    // when
    await fillAndSubmit();
    // then the messages sit with their fields, linked for screen readers
    const username = screen.getByLabelText("Username");
    await waitFor(() => expect(username).toHaveAttribute("aria-invalid", "true"));
    expect(username).toHaveAccessibleDescription("A user with that username already exists.");
    expect(screen.getByLabelText("Password")).toHaveAccessibleDescription(
      expect.stringContaining("This password is too short. This password is too common."),
    );
    expect(screen.getByLabelText("Email")).not.toHaveAttribute("aria-invalid");
    expect(document.querySelector(".banner-error")).toBeNull();
    // and the POST carried the CSRF header from the cookie
    const post = calls.find((c) => c.method === "POST")!;
    expect(post.headers.get("X-CSRFToken")).toBe("test-csrf-token");
    expect(post.body).toEqual({ username: "alice", email: "alice@example.com", password: "pw" });
  });

  it("puts errors that name no shown field in the general banner", async () => {
    // given a throttled request
    mockFetch({
      ...anonymous,
      "POST /api/v1/auth/signup/": () =>
        json(429, { error: { code: "throttled", message: "Request was throttled. Expected available in 30 seconds.", fields: {} } }),
    });
    renderSignup();
    // when
    await fillAndSubmit();
    // then
    const banner = await screen.findByRole("alert");
    expect(banner).toHaveTextContent("Too many requests; try again in 30 seconds.");
    expect(screen.getByLabelText("Username")).not.toHaveAttribute("aria-invalid");
  });

  it("lists errors of fields the form does not show in the banner", async () => {
    mockFetch({
      ...anonymous,
      "POST /api/v1/auth/signup/": () =>
        json(400, { error: { code: "invalid", message: "terms: required", fields: { terms: ["This field is required."] } } }),
    });
    renderSignup();
    await fillAndSubmit();
    const banner = await screen.findByRole("alert");
    expect(banner).toHaveTextContent("terms: required");
    expect(banner).toHaveTextContent("This field is required.");
  });
});
