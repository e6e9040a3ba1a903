// Where the service is. Same origin by default (the dev server proxies /graphql and
// /dev to the service); VITE_API_URL points a build at another origin (then the service
// needs CORS_ALLOWED_ORIGINS to list this page's origin).
const base = (import.meta.env.VITE_API_URL ?? window.location.origin).replace(/\/+$/, "");

export const graphqlUrl = `${base}/graphql`;
export const websocketUrl = graphqlUrl.replace(/^http/, "ws");
export const signInUrl = `${base}/dev/token`;
export const stripeKey = import.meta.env.VITE_STRIPE_PUBLISHABLE_KEY || "";
