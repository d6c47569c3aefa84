import type { PageConfig } from "./api/types";

const DEFAULTS: PageConfig = {
  payment_provider: "demo",
  stripe_publishable_key: null,
  stripe_js_url: null,
  public_url: typeof window !== "undefined" ? window.location.origin : "",
};

let cached: PageConfig | null = null;

/** The config Django embeds in index.html as <script id="cp-config" type="application/json">. */
export function pageConfig(): PageConfig {
  if (cached) return cached;
  const node = typeof document !== "undefined" ? document.getElementById("cp-config") : null;
  let parsed: Partial<PageConfig> = {};
  if (node?.textContent) {
    try {
      parsed = JSON.parse(node.textContent) as Partial<PageConfig>;
    } catch {
      parsed = {};
    }
  }
  cached = { ...DEFAULTS, ...parsed };
  return cached;
}

/** Tests change the embedded config between cases. */
export function pageConfigReset(): void {
  cached = null;
}
