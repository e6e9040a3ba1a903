import { useMutation } from "@apollo/client/react";
import { useRef, useState } from "react";
import { useCart, useProductNames } from "../cart";
import { stripeKey } from "../config";
import { CardError, type Problem, requestProblem, userProblem } from "../errors";
import { money } from "../format";
import { StorefrontCheckoutDocument } from "../gql/graphql";
import { navigate } from "../router";
import { session, setCartId } from "../session";
import { StripeCard, type Tokenize } from "./StripeCard";

// The sandbox payment provider answers Stripe's documented test tokens as Stripe would.
const sandboxTokens = [
  { token: "tok_visa", label: "Visa, pays" },
  { token: "tok_chargeDeclined", label: "Visa, declined" },
  { token: "pm_card_threeDSecure2Required", label: "Card that needs 3-D Secure" },
];

// One checkout attempt = one idempotency key (and the payment token it was made with),
// kept in sessionStorage until the attempt ends: a retry after a network error, a reload
// or a second click sends the same key, and the service answers the same order instead
// of placing (and charging) a second one. A refusal (userError) or an order ends it.
type Attempt = { key: string; paymentToken: string };
const attemptKey = (cartId: string) => `checkout.attempt.${cartId}`;

function currentAttempt(cartId: string): Attempt | null {
  try {
    return JSON.parse(sessionStorage.getItem(attemptKey(cartId)) ?? "null");
  } catch {
    return null;
  }
}
function startAttempt(cartId: string, paymentToken: string): Attempt {
  const attempt = { key: crypto.randomUUID(), paymentToken };
  sessionStorage.setItem(attemptKey(cartId), JSON.stringify(attempt));
  return attempt;
}
const endAttempt = (cartId: string) => sessionStorage.removeItem(attemptKey(cartId));

export function CheckoutPage() {
  const me = session.use();
  const { cart, loading } = useCart("cache-and-network");
  const productName = useProductNames();
  const [checkout] = useMutation(StorefrontCheckoutDocument);
  const [sandboxToken, setSandboxToken] = useState(sandboxTokens[0].token);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const inFlight = useRef(false);
  const tokenize = useRef<Tokenize | null>(null);

  if (!me) return <p><a href="#/signin">Sign in</a> to check out.</p>;
  if (!cart) return loading ? <p>Loading…</p> : <p>Your cart is empty. <a href="#/">Shop</a></p>;
  const cartId = cart.id;

  async function pay() {
    if (inFlight.current) return; // one request at a time (the button is disabled too)
    inFlight.current = true;
    setBusy(true);
    setProblem(null);
    try {
      let attempt = currentAttempt(cartId);
      if (stripeKey) {
        // A retry reuses the attempt's token: the service may have used it already.
        if (!attempt) {
          if (!tokenize.current) throw new Error("the card form is not ready");
          attempt = startAttempt(cartId, await tokenize.current());
        }
      } else if (attempt?.paymentToken !== sandboxToken) {
        attempt = startAttempt(cartId, sandboxToken); // another payment method: another attempt
      }
      const { data } = await checkout({
        variables: { input: { cartId, idempotencyKey: attempt.key, paymentToken: attempt.paymentToken } },
      });
      const { order, userErrors } = data!.checkout;
      endAttempt(cartId); // answered: the next click is a new attempt
      if (userErrors.length > 0 || !order) {
        const [error] = userErrors;
        if (error?.code === "CART_NOT_FOUND") setCartId(null); // closed: nothing left to pay
        // OUT_OF_STOCK and the other refusals keep the cart: the shopper changes it.
        setProblem(error ? userProblem(error, productName) : { code: "UNKNOWN", sentence: "Please try again." });
        return;
      }
      setCartId(null);
      navigate(`/orders/${order.id}`);
    } catch (error) {
      // Not answered (network, rate limit, busy service): the attempt stays, so trying
      // again sends the same key.
      setProblem(
        error instanceof CardError ? { code: "CARD_ERROR", sentence: error.message } : requestProblem(error),
      );
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }

  return (
    <section>
      <h1>Checkout</h1>
      <ul className="lines" data-testid="checkout-summary">
        {cart.items.map((item) => (
          <li key={item.sku}>
            <span className="name">{productName(item.sku) ?? item.sku}</span>
            <span>× {item.quantity}</span>
            <span>{money(item.unitPriceCents * item.quantity, cart.currency)}</span>
          </li>
        ))}
      </ul>
      <p className="total">
        Total: <strong data-testid="checkout-total">{money(cart.totalCents, cart.currency)}</strong>
      </p>
      <h2>Payment</h2>
      {stripeKey ? (
        <StripeCard publishableKey={stripeKey} onReady={(t) => (tokenize.current = t)} />
      ) : (
        <label>
          Sandbox test card{" "}
          <select data-testid="payment-token" value={sandboxToken} onChange={(e) => setSandboxToken(e.target.value)}>
            {sandboxTokens.map((t) => (
              <option key={t.token} value={t.token}>
                {t.label} ({t.token})
              </option>
            ))}
          </select>
        </label>
      )}
      <p>
        <button type="button" data-testid="pay" disabled={busy || cart.items.length === 0} onClick={pay}>
          {busy ? "Paying…" : `Pay ${money(cart.totalCents, cart.currency)}`}
        </button>
      </p>
      {problem && (
        <p className="error" role="alert" data-testid="checkout-error" data-code={problem.code}>
          {problem.sentence}
        </p>
      )}
      <p>
        <a href="#/cart">Back to the cart</a>
      </p>
    </section>
  );
}
