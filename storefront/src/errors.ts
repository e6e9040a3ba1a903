import { CombinedGraphQLErrors, ServerError } from "@apollo/client/errors";
import type { UserErrorCode } from "./gql/graphql";

// What went wrong, for a shopper: a code (shown as data-code, for tests and support)
// and a sentence.
export type Problem = { code: string; sentence: string };

/** A card the payment provider's form could not turn into a token (Stripe.js). */
export class CardError extends Error {}

export type UserError = { code: UserErrorCode; field?: readonly string[] | null; message: string };

// The service's messages name the SKU ("only 0 of SNEAKER-42 available, 1 requested",
// "at most 2 of SNEAKER-42 per customer; 1 already in your orders, 2 requested").
const skuIn = (message: string) => / of (\S+?) (?:available|per customer)/.exec(message)?.[1];

// One sentence per UserErrorCode of the schema. The Record makes `npm run lint` fail
// when the schema gains a code and this table does not say what it means.
const sentences: Record<UserErrorCode, (e: UserError, product: string) => string> = {
  OUT_OF_STOCK: (_, p) =>
    `Sorry, ${p} sold out while you were checking out. Your cart is kept; change it and try again.`,
  PURCHASE_LIMIT_EXCEEDED: (e, p) => {
    const [, max, held] = /at most (\d+) .*?(\d+) already/.exec(e.message) ?? [];
    return (
      `Sorry, ${p} is limited to ${max ?? "a few"} per customer` +
      (Number(held) > 0 ? ` and your orders already hold ${held}` : "") +
      ". Lower the quantity in your cart and try again."
    );
  },
  TOO_MANY_UNPAID_ORDERS: () =>
    "You already have several orders waiting for payment. Pay or cancel one of them in My orders, then try again.",
  TOO_MANY_FAILED_PAYMENTS: () =>
    "Too many payments were declined lately. Please wait a while (up to an hour) before you try again.",
  UNKNOWN_SKU: (_, p) => `Sorry, ${p} is no longer sold. Remove it from your cart and try again.`,
  INVALID_QUANTITY: () => "Please choose a quantity between 1 and 10,000.",
  CART_NOT_FOUND: () =>
    "This cart is no longer open (it may have been checked out already). Look in My orders, or start a new cart.",
  CART_EMPTY: () => "Your cart is empty: add something first.",
  IDEMPOTENCY_KEY_REUSED: () =>
    "Your cart changed during this checkout attempt. Please check it and pay again.",
  INVALID_PAYMENT_TOKEN: () =>
    "Your payment details were not accepted. Please check them, or choose another payment method.",
  INVALID_INPUT: (e) => `Your order could not be accepted: ${e.message}.`,
  ORDER_NOT_CANCELLABLE: () => "This order can no longer be cancelled.",
  INVALID_TRANSITION: () => "This order cannot change that way any more.",
  INVALID_WEBHOOK_URL: () => "That web address is not accepted.",
  NOT_FOUND: () => "We could not find this order.",
};

/** A userError (a refusal: nothing was done) as a sentence. */
export function userProblem(e: UserError, productName: (sku: string) => string | undefined): Problem {
  const sku = skuIn(e.message);
  const product = (sku && productName(sku)) || sku || "an item";
  const sentence = sentences[e.code]?.(e, product) ?? e.message; // a code newer than this build: its message
  return { code: e.code, sentence };
}

const seconds = (n: number | undefined) => (n ? `${n} second${n === 1 ? "" : "s"}` : "a moment");

/**
 * A failed request (nothing or not everything was answered) as a sentence: GraphQL
 * errors with extensions.code, HTTP refusals (429/503 with Retry-After), network errors.
 */
export function requestProblem(error: unknown): Problem {
  let code = "NETWORK_ERROR";
  let retryAfter: number | undefined;
  let correlationId: string | undefined;
  if (CombinedGraphQLErrors.is(error)) {
    const ext = error.errors[0]?.extensions ?? {};
    code = String(ext.code ?? "INTERNAL_SERVER_ERROR");
    retryAfter = Number(ext.retryAfter) || undefined;
    correlationId = ext.correlationId as string | undefined;
  } else if (ServerError.is(error)) {
    // The load shedder answers plain application/json: 429 RATE_LIMITED or 503
    // SERVICE_UNAVAILABLE, with a Retry-After header.
    retryAfter = Number(error.response.headers.get("Retry-After")) || undefined;
    try {
      code = JSON.parse(error.bodyText).errors[0].extensions.code;
    } catch {
      code = error.statusCode === 429 ? "RATE_LIMITED" : error.statusCode === 503 ? "SERVICE_UNAVAILABLE" : `HTTP_${error.statusCode}`;
    }
  }
  const again = "Nothing was charged twice: trying again is safe.";
  switch (code) {
    case "RATE_LIMITED":
      return { code, sentence: `You are going a little fast. Please wait ${seconds(retryAfter)} and try again.` };
    case "SERVICE_UNAVAILABLE":
      return { code, sentence: `The shop is very busy right now. Please try again in ${seconds(retryAfter)}. ${again}` };
    case "UNAUTHENTICATED":
      return { code, sentence: "Your session has ended. Please sign in again." };
    case "FORBIDDEN":
      return { code, sentence: "You are not allowed to do this." };
    case "NETWORK_ERROR":
      return { code, sentence: `We could not reach the shop. Check your connection and try again. ${again}` };
    default:
      return {
        code,
        sentence: `Something went wrong on our side. Please try again.${correlationId ? ` (Reference: ${correlationId})` : ""}`,
      };
  }
}
