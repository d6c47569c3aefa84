// Stripe.js is loaded only when a purchase needs it (never at startup), from the URL the
// server configures (STRIPE_JS_URL), so a self-hosted or test stand-in works the same way.

interface StripeElement {
  mount: (target: HTMLElement) => void;
  destroy: () => void;
}
interface StripeElements {
  create: (type: "payment", options?: Record<string, unknown>) => StripeElement;
}
export interface StripeClient {
  elements: (options: { clientSecret: string; appearance?: Record<string, unknown> }) => StripeElements;
  confirmPayment: (options: {
    elements: StripeElements;
    redirect: "if_required";
    confirmParams?: Record<string, unknown>;
  }) => Promise<{ error?: { message?: string }; paymentIntent?: { status: string } }>;
}
type StripeFactory = (publishableKey: string) => StripeClient;

const loading = new Map<string, Promise<StripeFactory>>();

export function stripeLoad(url: string): Promise<StripeFactory> {
  const known = loading.get(url);
  if (known) return known;
  const promise = new Promise<StripeFactory>((resolve, reject) => {
    const existing = (window as unknown as { Stripe?: StripeFactory }).Stripe;
    if (existing) {
      resolve(existing);
      return;
    }
    const script = document.createElement("script");
    script.src = url;
    script.async = true;
    script.onload = () => {
      const factory = (window as unknown as { Stripe?: StripeFactory }).Stripe;
      if (factory) resolve(factory);
      else reject(new Error("Stripe.js loaded but did not define Stripe."));
    };
    script.onerror = () => {
      loading.delete(url);
      reject(new Error("Could not load the payment form. Try again."));
    };
    document.head.appendChild(script);
  });
  loading.set(url, promise);
  return promise;
}

export type { StripeElements, StripeElement };
