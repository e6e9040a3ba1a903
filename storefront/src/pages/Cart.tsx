import { useMutation } from "@apollo/client/react";
import { useEffect, useRef, useState } from "react";
import { useCart, useProductNames } from "../cart";
import { type Problem, requestProblem, userProblem, type UserError } from "../errors";
import { money } from "../format";
import { StorefrontRemoveCartItemDocument, StorefrontUpdateCartItemDocument } from "../gql/graphql";
import { session } from "../session";

export function CartPage() {
  const me = session.use();
  const { cart, loading } = useCart("cache-and-network");
  const productName = useProductNames();
  const [update] = useMutation(StorefrontUpdateCartItemDocument);
  const [remove] = useMutation(StorefrontRemoveCartItemDocument);
  const [problem, setProblem] = useState<Problem | null>(null);

  if (!me) return <p><a href="#/signin">Sign in</a> to see your cart.</p>;
  if (!cart) return loading ? <p>Loading…</p> : <p data-testid="cart-empty">Your cart is empty. <a href="#/">Shop</a></p>;

  // Runs a cart mutation and shows its refusal or failure as a sentence.
  async function change(run: () => Promise<{ userErrors: readonly UserError[] } | undefined>) {
    try {
      const [error] = (await run())?.userErrors ?? [];
      setProblem(error ? userProblem(error, productName) : null);
    } catch (error) {
      setProblem(requestProblem(error));
    }
  }
  const cartId = cart.id;
  const setQuantity = (sku: string, quantity: number) =>
    change(async () => (await update({ variables: { cartId, sku, quantity } })).data?.updateCartItem);
  const removeLine = (sku: string) =>
    change(async () => (await remove({ variables: { cartId, sku } })).data?.removeCartItem);

  return (
    <section>
      <h1>Your cart</h1>
      {cart.items.length === 0 && <p data-testid="cart-empty">Your cart is empty. <a href="#/">Shop</a></p>}
      <ul className="lines">
        {cart.items.map((item) => (
          <li key={item.sku} data-testid={`cart-line-${item.sku}`}>
            <span className="name">{productName(item.sku) ?? item.sku}</span>
            <span>{money(item.unitPriceCents, cart.currency)}</span>
            <Quantity value={item.quantity} onCommit={(q) => setQuantity(item.sku, q)} />
            <span>{money(item.unitPriceCents * item.quantity, cart.currency)}</span>
            <button type="button" data-testid="remove" onClick={() => removeLine(item.sku)}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      {problem && (
        <p className="error" role="alert" data-testid="cart-error" data-code={problem.code}>
          {problem.sentence}
        </p>
      )}
      <p className="total">
        Total: <strong data-testid="cart-total">{money(cart.totalCents, cart.currency)}</strong>
      </p>
      {cart.items.length > 0 && (
        <a href="#/checkout" className="button" data-testid="go-checkout">
          Check out
        </a>
      )}
    </section>
  );
}

// A quantity field that sends its value once the shopper stops typing (or leaves it).
function Quantity({ value, onCommit }: { value: number; onCommit: (quantity: number) => void }) {
  const [text, setText] = useState(String(value));
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  useEffect(() => setText(String(value)), [value]);
  useEffect(() => () => clearTimeout(timer.current), []);
  const commit = (t: string) => {
    clearTimeout(timer.current);
    const q = Number(t);
    if (t !== "" && Number.isInteger(q) && q >= 0 && q !== value) onCommit(q); // 0 removes the line
  };
  return (
    <input
      type="number"
      min={0}
      max={10000}
      data-testid="quantity"
      aria-label="Quantity"
      value={text}
      onChange={(e) => {
        const t = e.target.value;
        setText(t);
        clearTimeout(timer.current);
        timer.current = setTimeout(() => commit(t), 500);
      }}
      onBlur={() => commit(text)}
      onKeyDown={(e) => e.key === "Enter" && commit(text)}
    />
  );
}
