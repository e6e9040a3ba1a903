import { createStore } from "./store";

// Hash routing: #/, #/cart, #/checkout, #/orders, #/orders/<id>, #/signin.
const current = () => window.location.hash.replace(/^#/, "") || "/";

const route = createStore(current());
window.addEventListener("hashchange", () => route.set(current()));

export const useRoute = route.use;

export function navigate(path: string) {
  window.location.hash = path;
}
