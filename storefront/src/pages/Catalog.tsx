import { useQuery } from "@apollo/client/react";
import { useEffect, useState } from "react";
import { addToCart, CATALOG_SIZE, useProductNames } from "../cart";
import { requestProblem, type Problem } from "../errors";
import { money } from "../format";
import { StorefrontProductsDocument } from "../gql/graphql";
import { session } from "../session";

let markedInteractive = false;

// The catalog, with availability kept live by polling every 2 s (the contract has no
// stock subscription; polling one query is cheap and cacheable).
export function CatalogPage() {
  const me = session.use();
  const { data, error } = useQuery(StorefrontProductsDocument, {
    variables: { first: CATALOG_SIZE },
    pollInterval: 2000,
    notifyOnNetworkStatusChange: false,
  });
  const productName = useProductNames();
  const [adding, setAdding] = useState<string | null>(null);
  const [problems, setProblems] = useState<Record<string, Problem | null>>({});
  const products = data?.products.edges.map((e) => e.node);

  useEffect(() => {
    if (products && !markedInteractive) {
      markedInteractive = true;
      performance.mark("catalog-interactive");
    }
  }, [products]);

  async function add(sku: string) {
    setAdding(sku);
    const problem = await addToCart(sku, 1, productName);
    setProblems((p) => ({ ...p, [sku]: problem }));
    setAdding(null);
  }

  return (
    <section data-testid="catalog" data-ready={products ? "true" : undefined}>
      <h1>Shop</h1>
      {!products && !error && <p>Loading…</p>}
      {error && !products && <p className="error">{requestProblem(error).sentence}</p>}
      {!me && (
        <p className="note">
          <a href="#/signin">Sign in</a> to add products to your cart.
        </p>
      )}
      <ul className="products">
        {products?.map((p) => {
          const soldOut = p.available <= 0;
          const problem = problems[p.sku];
          return (
            <li key={p.sku} data-testid={`product-${p.sku}`} className="product">
              <h2>{p.name}</h2>
              <p className="price">{money(p.priceCents, p.currency)}</p>
              <p>
                <span data-testid="available">{p.available}</span> available
                {soldOut && (
                  <span className="badge" data-testid="sold-out">
                    Sold out
                  </span>
                )}
              </p>
              {p.maxPerCustomer != null && (
                <p className="note" data-testid="max-per-customer">
                  limit {p.maxPerCustomer} per customer
                </p>
              )}
              <button
                type="button"
                data-testid="add-to-cart"
                disabled={soldOut || !me || adding === p.sku}
                onClick={() => add(p.sku)}
              >
                {soldOut ? "Sold out" : "Add to cart"}
              </button>
              {problem && (
                <p className="error" data-testid="add-error" data-code={problem.code}>
                  {problem.sentence}
                </p>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
