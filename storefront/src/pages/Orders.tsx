import { useQuery } from "@apollo/client/react";
import { requestProblem } from "../errors";
import { dateTime, money } from "../format";
import { StorefrontMyOrdersDocument } from "../gql/graphql";
import { session } from "../session";
import { statusLabels } from "./Order";

export function OrdersPage() {
  const me = session.use();
  const { data, error } = useQuery(StorefrontMyOrdersDocument, {
    variables: { first: 20 },
    fetchPolicy: "cache-and-network",
    skip: !me,
  });
  if (!me) return <p><a href="#/signin">Sign in</a> to see your orders.</p>;
  if (error && !data) return <p className="error">{requestProblem(error).sentence}</p>;
  if (!data) return <p>Loading…</p>;
  const orders = data.myOrders.edges.map((e) => e.node);
  return (
    <section>
      <h1>My orders</h1>
      {orders.length === 0 && <p>No orders yet. <a href="#/">Shop</a></p>}
      <ul className="lines">
        {orders.map((o) => (
          <li key={o.id} data-testid={`order-row-${o.id}`}>
            <a href={`#/orders/${o.id}`}>{dateTime(o.createdAt)}</a>
            <span data-testid="status" data-status={o.status}>{statusLabels[o.status] ?? o.status}</span>
            <span data-testid="total">{money(o.totalCents, o.currency)}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}
