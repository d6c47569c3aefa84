import { act, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import { pageConfigReset } from "../config";
import { json, mockFetch } from "../test/fetchMock";
import { WalletPage } from "./Wallet";

const STRIPE_JS = "http://127.0.0.1:8000/static/fake-stripe/v3.js";

function configEmbed(config: Record<string, unknown>) {
  const node = document.createElement("script");
  node.id = "cp-config";
  node.type = "application/json";
  node.textContent = JSON.stringify(config);
  document.body.appendChild(node);
  pageConfigReset();
}

afterEach(() => {
  document.getElementById("cp-config")?.remove();
  document.querySelectorAll("script[src]").forEach((s) => s.remove());
  delete (window as unknown as { Stripe?: unknown }).Stripe;
  pageConfigReset();
});

const wallet = { balance_micros: 0, held_micros: 0, available_micros: 0 };
const emptyPage = { count: 0, next: null, previous: null, results: [] };

describe("buying credits", () => {
  it("with the demo provider: credited at once, with an Idempotency-Key", async () => {
    configEmbed({ payment_provider: "demo", stripe_publishable_key: null, stripe_js_url: null, public_url: "" });
    const { calls } = mockFetch({
      "GET /api/v1/wallet/": () => json(200, wallet),
      "GET /api/v1/wallet/history/": () => json(200, emptyPage),
      "POST /api/v1/payments/": () =>
        json(201, { id: 1, amount_micros: 12_500_000, status: "succeeded", provider: "demo", provider_payment_id: "", refunded_micros: 0, disputed_micros: 0, created_at: "", credited_at: "", client_secret: null, publishable_key: null }),
    });
    render(<MemoryRouter><WalletPage /></MemoryRouter>);
    const user = userEvent.setup();
    await user.clear(screen.getByLabelText("Amount (credits)"));
    await user.type(screen.getByLabelText("Amount (credits)"), "12.5");
    await user.click(screen.getByRole("button", { name: "Buy credits" }));
    expect(await screen.findByText("12.50 cr added (demo payment).")).toBeInTheDocument();
    const post = calls.find((c) => c.method === "POST")!;
    expect(post.body).toEqual({ amount_micros: 12_500_000 });
    expect(post.headers.get("Idempotency-Key")).toMatch(/^[0-9a-f-]{36}$/);
    expect(document.querySelector("script[src]")).toBeNull();
  });

  it("shows the amount's error next to the field", async () => {
    configEmbed({ payment_provider: "demo", stripe_publishable_key: null, stripe_js_url: null, public_url: "" });
    mockFetch({
      "GET /api/v1/wallet/": () => json(200, wallet),
      "GET /api/v1/wallet/history/": () => json(200, emptyPage),
      "POST /api/v1/payments/": () =>
        json(400, { error: { code: "invalid", message: "amount_micros: at least 1.00", fields: { amount_micros: ["At least 1.000000 credits."] } } }),
    });
    render(<MemoryRouter><WalletPage /></MemoryRouter>);
    const user = userEvent.setup();
    await user.clear(screen.getByLabelText("Amount (credits)"));
    await user.type(screen.getByLabelText("Amount (credits)"), "0.5");
    await user.click(screen.getByRole("button", { name: "Buy credits" }));
    await waitFor(() => expect(screen.getByLabelText("Amount (credits)")).toHaveAccessibleDescription(expect.stringContaining("At least 1.000000 credits.")));
  });

  it("with Stripe: loads Stripe.js only then, from the configured URL, and mounts the Payment Element", async () => {
    // given Stripe payments; nothing of Stripe is on the page yet
    configEmbed({ payment_provider: "stripe", stripe_publishable_key: "pk_test_1", stripe_js_url: STRIPE_JS, public_url: "" });
    mockFetch({
      "GET /api/v1/wallet/": () => json(200, wallet),
      "GET /api/v1/wallet/history/": () => json(200, emptyPage),
      "POST /api/v1/payments/": () =>
        json(201, { id: 2, amount_micros: 10_000_000, status: "pending", provider: "stripe", provider_payment_id: "pi_1", refunded_micros: 0, disputed_micros: 0, created_at: "", credited_at: null, client_secret: "pi_1_secret", publishable_key: "pk_test_1" }),
    });
    render(<MemoryRouter><WalletPage /></MemoryRouter>);
    await screen.findByTestId("balance");
    expect(document.querySelector(`script[src="${STRIPE_JS}"]`)).toBeNull();
    // when the person continues to payment
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Continue to payment" }));
    // then Stripe.js is requested; once it loads, the Payment Element is mounted
    const script = await waitFor(() => {
      const found = document.querySelector<HTMLScriptElement>(`script[src="${STRIPE_JS}"]`);
      expect(found).not.toBeNull();
      return found!;
    });
    const mount = vi.fn();
    const confirmPayment = vi.fn(async () => ({ paymentIntent: { status: "succeeded" } }));
    const elements = { create: vi.fn(() => ({ mount, destroy: vi.fn() })) };
    const factory = vi.fn(() => ({ elements: vi.fn(() => elements), confirmPayment }));
    (window as unknown as { Stripe: unknown }).Stripe = factory;
    act(() => script.dispatchEvent(new Event("load")));
    await waitFor(() => expect(mount).toHaveBeenCalled());
    expect(factory).toHaveBeenCalledWith("pk_test_1");
    expect(elements.create).toHaveBeenCalledWith("payment");
    await user.click(screen.getByRole("button", { name: "Pay" }));
    expect(confirmPayment).toHaveBeenCalledWith({ elements, redirect: "if_required" });
    expect(await screen.findByText(/Credits appear as soon as the payment provider confirms it/)).toBeInTheDocument();
  });
});
