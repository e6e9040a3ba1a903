/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Base URL of the checkout service, e.g. https://api.shop.example; default: this page's origin. */
  readonly VITE_API_URL?: string;
  /** Stripe publishable key (pk_test_...); when unset, checkout offers the sandbox's test tokens. */
  readonly VITE_STRIPE_PUBLISHABLE_KEY?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}

// The manifest that `npm run manifest` writes (apollo-persisted-query-manifest format).
// Declared here so type checking does not need a build first.
declare module "*/persisted-query-manifest.json" {
  const manifest: {
    format: "apollo-persisted-query-manifest";
    version: 1;
    operations: { id: string; name: string; type: "query" | "mutation" | "subscription"; body: string }[];
  };
  export default manifest;
}
