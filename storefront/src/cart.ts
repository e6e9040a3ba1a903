import { skipToken, useQuery } from "@apollo/client/react";
import { useEffect, useMemo } from "react";
import { client } from "./apollo";
import { type Problem, requestProblem, userProblem } from "./errors";
import {
  StorefrontAddCartItemDocument,
  StorefrontCartDocument,
  StorefrontCreateCartDocument,
  StorefrontProductsDocument,
} from "./gql/graphql";
import { cartId, session, setCartId } from "./session";

export const CATALOG_SIZE = 50;

/**
 * The signed-in customer's open cart (null when there is none yet). The cart's id is
 * kept in localStorage per customer and read back after a reload; a cart the service no
 * longer returns (closed, or not this customer's) is forgotten.
 */
export function useCart(fetchPolicy: "cache-first" | "cache-and-network" = "cache-first") {
  const id = cartId.use();
  const { data, loading, error } = useQuery(
    StorefrontCartDocument,
    id ? { variables: { id }, fetchPolicy } : skipToken,
  );
  const gone = !!id && data !== undefined && data.cart === null;
  useEffect(() => {
    if (gone) setCartId(null);
  }, [gone]);
  const cart = id && data?.cart?.id === id ? data.cart : null;
  return { cart, loading, error };
}

/** Product names by SKU, from the catalog query (cached, also used by the catalog page). */
export function useProductNames(): (sku: string) => string | undefined {
  const { data } = useQuery(StorefrontProductsDocument, { variables: { first: CATALOG_SIZE } });
  return useMemo(() => {
    const names = new Map(data?.products.edges.map(({ node }) => [node.sku, node.name]));
    return (sku: string) => names.get(sku);
  }, [data]);
}

/**
 * Adds units of a product to the cart, creating the cart on the first add (and again
 * when the kept one was closed meanwhile). Answers a problem to show, or null.
 */
export async function addToCart(
  sku: string,
  quantity: number,
  productName: (sku: string) => string | undefined,
): Promise<Problem | null> {
  if (!session.get()) return { code: "UNAUTHENTICATED", sentence: "Please sign in to shop." };
  try {
    for (let attempt = 0; ; attempt++) {
      let id = cartId.get();
      if (!id) {
        const { data } = await client.mutate({ mutation: StorefrontCreateCartDocument });
        const cart = data!.createCart;
        client.writeQuery({ query: StorefrontCartDocument, variables: { id: cart.id }, data: { cart } });
        setCartId(cart.id);
        id = cart.id;
      }
      const { data } = await client.mutate({
        mutation: StorefrontAddCartItemDocument,
        variables: { cartId: id, sku, quantity },
      });
      const [problem] = data!.addCartItem.userErrors;
      if (!problem) return null;
      if (problem.code === "CART_NOT_FOUND" && attempt === 0) {
        setCartId(null); // checked out in another tab, or gone: start a new cart
        continue;
      }
      return userProblem(problem, productName);
    }
  } catch (error) {
    return requestProblem(error);
  }
}
