import { createStore } from "./store";

// The signed-in customer: its JWT (sent as Authorization: Bearer) and its name (the
// token's sub). A development sign-in gets them from POST /dev/token; a real shop gets
// the token from its identity provider and keeps the rest of this file.
const TOKEN = "checkout.token";
const SUBJECT = "checkout.subject";

export type Session = { token: string; subject: string } | null;

function read(): Session {
  const token = localStorage.getItem(TOKEN);
  const subject = localStorage.getItem(SUBJECT);
  return token && subject ? { token, subject } : null;
}

export const session = createStore<Session>(read());

export function signIn(token: string, subject: string) {
  localStorage.setItem(TOKEN, token);
  localStorage.setItem(SUBJECT, subject);
  session.set({ token, subject });
  cartId.set(readCartId());
}

export function signOut() {
  localStorage.removeItem(TOKEN);
  localStorage.removeItem(SUBJECT);
  session.set(null);
  cartId.set(null);
}

// The open cart of the signed-in customer, one per customer on this browser.
const cartKey = () => `checkout.cart.${session.get()?.subject}`;

function readCartId(): string | null {
  return session.get() ? localStorage.getItem(cartKey()) : null;
}

export const cartId = createStore<string | null>(readCartId());

export function setCartId(id: string | null) {
  if (!session.get()) return;
  if (id) localStorage.setItem(cartKey(), id);
  else localStorage.removeItem(cartKey());
  cartId.set(id);
}

// Another tab signing in or out, or checking out, changes this one too.
window.addEventListener("storage", () => {
  const s = read();
  if (s?.token !== session.get()?.token) session.set(s);
  cartId.set(readCartId());
});
