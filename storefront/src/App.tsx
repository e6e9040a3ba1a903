import { useCart } from "./cart";
import { CartPage } from "./pages/Cart";
import { CatalogPage } from "./pages/Catalog";
import { CheckoutPage } from "./pages/Checkout";
import { OrderPage } from "./pages/Order";
import { OrdersPage } from "./pages/Orders";
import { SignInPage } from "./pages/SignIn";
import { useRoute } from "./router";
import { session } from "./session";

export function App() {
  const route = useRoute();
  const orderId = /^\/orders\/([^/]+)$/.exec(route)?.[1];
  return (
    <>
      <Header />
      <main>
        {route === "/" ? (
          <CatalogPage />
        ) : route === "/cart" ? (
          <CartPage />
        ) : route === "/checkout" ? (
          <CheckoutPage />
        ) : route === "/orders" ? (
          <OrdersPage />
        ) : orderId ? (
          <OrderPage id={decodeURIComponent(orderId)} key={orderId} />
        ) : route === "/signin" ? (
          <SignInPage />
        ) : (
          <p>
            Nothing here. <a href="#/">Back to the shop</a>
          </p>
        )}
      </main>
    </>
  );
}

function Header() {
  const me = session.use();
  const { cart } = useCart();
  const units = cart?.items.reduce((n, item) => n + item.quantity, 0) ?? 0;
  return (
    <header>
      <a href="#/" className="brand">
        Storefront
      </a>
      <nav>
        <a href="#/">Shop</a>
        <a href="#/cart">
          Cart (<span data-testid="cart-count">{units}</span>)
        </a>
        {me && <a href="#/orders">My orders</a>}
        {me ? (
          <a href="#/signin" data-testid="whoami">
            {me.subject}
          </a>
        ) : (
          <a href="#/signin">Sign in</a>
        )}
      </nav>
    </header>
  );
}
