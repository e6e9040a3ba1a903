import { useEffect, useRef, useState } from "react";
import { CardError } from "../errors";

export type Tokenize = () => Promise<string>;

// A Stripe card Element (loaded only when VITE_STRIPE_PUBLISHABLE_KEY is set). The card
// number goes from the Element to Stripe, never through this page's code or the
// service: the service gets a token (tok_...) to charge.
export function StripeCard({ publishableKey, onReady }: { publishableKey: string; onReady: (t: Tokenize) => void }) {
  const mount = useRef<HTMLDivElement>(null);
  const [error, setError] = useState("");
  const ready = useRef(onReady);
  ready.current = onReady;
  useEffect(() => {
    let card: { destroy(): void } | undefined;
    let cancelled = false;
    (async () => {
      const { loadStripe } = await import("@stripe/stripe-js");
      const stripe = await loadStripe(publishableKey);
      if (!stripe || cancelled || !mount.current) return;
      const element = stripe.elements().create("card");
      element.mount(mount.current);
      card = element;
      ready.current(async () => {
        const { token, error } = await stripe.createToken(element);
        if (error || !token) throw new CardError(error?.message ?? "Your card could not be read.");
        return token.id;
      });
    })().catch(() => setError("The card form could not be loaded. Check your connection and reload."));
    return () => {
      cancelled = true;
      card?.destroy();
    };
  }, [publishableKey]);
  return (
    <>
      <div ref={mount} className="card" data-testid="stripe-card" />
      {error && <p className="error">{error}</p>}
    </>
  );
}
