import { useMutation, useQuery, useSubscription } from "@apollo/client/react";
import { useEffect, useState } from "react";
import { connection, onReconnect } from "../apollo";
import { type Problem, requestProblem, userProblem } from "../errors";
import { dateTime, money } from "../format";
import {
  type OrderStatus,
  StorefrontCancelOrderDocument,
  StorefrontOrderDocument,
  StorefrontOrderStatusDocument,
} from "../gql/graphql";

const FINAL: OrderStatus[] = ["SHIPPED", "PAYMENT_FAILED", "CANCELLED", "EXPIRED"];

export const statusLabels: Record<OrderStatus, string> = {
  PENDING_PAYMENT: "Waiting for payment",
  PAID: "Paid: we are packing your order",
  SHIPPED: "Shipped",
  PAYMENT_FAILED: "Payment failed",
  EXPIRED: "Expired: not paid in time, nothing was charged",
  CANCELLED: "Cancelled",
};

// An order, kept current: the order query (read again after a reload), then the
// orderStatusChanged subscription (its current state first, then each change), and the
// query again after every reconnection, in case a change came while disconnected.
export function OrderPage({ id }: { id: string }) {
  const { data, error, refetch } = useQuery(StorefrontOrderDocument, { variables: { id } });
  const order = data?.order;
  const final = !!order && FINAL.includes(order.status);
  // Its results update the cached order (same id), so the query above re-renders.
  const sub = useSubscription(StorefrontOrderStatusDocument, { variables: { orderId: id }, skip: !order || final });
  const state = connection.use();
  const [cancel, { loading: cancelling }] = useMutation(StorefrontCancelOrderDocument);
  const [problem, setProblem] = useState<Problem | null>(null);

  useEffect(() => onReconnect(() => void refetch()), [refetch]);

  if (error && !order) return <p className="error">{requestProblem(error).sentence}</p>;
  if (!data) return <p>Loading…</p>;
  if (!order) return <p data-testid="order-not-found">We could not find this order. <a href="#/orders">My orders</a></p>;

  async function cancelOrder() {
    try {
      const { data } = await cancel({ variables: { id } });
      const [e] = data?.cancelOrder.userErrors ?? [];
      setProblem(e ? userProblem(e, () => undefined) : null);
    } catch (err) {
      setProblem(requestProblem(err));
    }
  }

  const live = final || state === "live";
  return (
    <section>
      <h1>Order {order.id.slice(0, 8)}</h1>
      <p className="status" data-testid="order-status" data-status={order.status}>
        {statusLabels[order.status] ?? order.status}
        {order.status === "SHIPPED" && order.trackingNumber && (
          <> — tracking number <strong data-testid="tracking-number">{order.trackingNumber}</strong></>
        )}
        {order.status === "PAYMENT_FAILED" && (
          <> — {order.paymentFailureReason ? reason(order.paymentFailureReason) : "your card was declined"}. Nothing was charged.</>
        )}
      </p>
      {order.status === "PENDING_PAYMENT" && order.reservationExpiresAt && (
        <p className="note">Your items are held until {dateTime(order.reservationExpiresAt)}.</p>
      )}
      <p className="connection" data-testid="connection" data-state={live ? "live" : "reconnecting"}>
        {final ? "Final status" : live ? "Live: this page updates by itself" : state === "connecting" ? "Connecting…" : "Reconnecting…"}
      </p>
      {sub.error && <p className="error">{requestProblem(sub.error).sentence}</p>}
      <ul className="lines">
        {order.items.map((item) => (
          <li key={item.sku}>
            <span className="name">{item.product?.name ?? item.sku}</span>
            <span>× {item.quantity}</span>
            <span>{money(item.unitPriceCents * item.quantity, order.currency)}</span>
          </li>
        ))}
      </ul>
      <p className="total">
        Total: <strong>{money(order.totalCents, order.currency)}</strong>
      </p>
      {order.status === "PENDING_PAYMENT" && (
        <button type="button" data-testid="cancel-order" disabled={cancelling} onClick={cancelOrder}>
          Cancel order
        </button>
      )}
      {problem && (
        <p className="error" role="alert" data-testid="order-error" data-code={problem.code}>
          {problem.sentence}
        </p>
      )}
      <p>
        <a href="#/orders">My orders</a>
      </p>
    </section>
  );
}

// Stripe's decline codes, in words; anything else as given.
function reason(code: string): string {
  const words: Record<string, string> = {
    card_declined: "your card was declined",
    insufficient_funds: "your card has insufficient funds",
    expired_card: "your card has expired",
  };
  return words[code] ?? code.replace(/_/g, " ");
}
