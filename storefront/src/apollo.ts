import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { SetContextLink } from "@apollo/client/link/context";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import type { DocumentNode } from "graphql";
import { createClient } from "graphql-ws";
import { graphqlUrl, websocketUrl } from "./config";
import { session } from "./session";
import { createStore } from "./store";

// Queries and mutations go over HTTP, subscriptions over a WebSocket (graphql-ws).
//
// Persisted queries: the production build sends only ids, taken from
// persisted-query-manifest.json (written by `npm run manifest` from src/operations and
// deployed with the service, which can then refuse everything else:
// PERSISTED_QUERIES=require). The dev server uses automatic persisted queries (APQ): a
// hash first, the text once when the service does not know it yet.
const persistedQueries = import.meta.env.PROD
  ? createPersistedQueryLink({
      ...generatePersistedQueryIdsFromManifest({ loadManifest: () => import("./manifest") }),
      useGETForHashedQueries: true, // queries by GET: an anonymous catalog page is cacheable
    })
  : createPersistedQueryLink({ sha256, useGETForHashedQueries: true });

// What generatePersistedQueryIdsFromManifest of @apollo/persisted-query-lists does (an
// operation's id is the manifest's id for its name), written out because that package's
// CommonJS build pulls all of graphql-js (about 40 KB gzipped) into the bundle.
function generatePersistedQueryIdsFromManifest(options: {
  loadManifest: () => Promise<{ default: { operations: { name: string; id: string }[] } }>;
}) {
  const ids = options.loadManifest().then((m) => new Map(m.default.operations.map((op) => [op.name, op.id])));
  return {
    generateHash: async (document: DocumentNode) => {
      const name = getMainDefinition(document).name?.value;
      const id = name && (await ids).get(name);
      if (!id) throw new Error(`operation ${name} is not in persisted-query-manifest.json: run npm run build`);
      return id;
    },
    disable: () => false, // keep sending ids whatever the answer (as the package does)
  };
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const auth = new SetContextLink(({ headers }) => {
  const token = session.get()?.token;
  return { headers: token ? { ...headers, authorization: `Bearer ${token}` } : headers };
});

const http = ApolloLink.from([persistedQueries, auth, new HttpLink({ uri: graphqlUrl })]);

// The socket's state for the page: "live" while connected, "reconnecting" while a
// dropped socket is being opened again ("connecting" before the first time).
export type ConnectionState = "connecting" | "live" | "reconnecting";
export const connection = createStore<ConnectionState>("connecting");

// Called on every reconnection after a drop: what changed meanwhile was not pushed.
const reconnectListeners = new Set<() => void>();
export function onReconnect(listener: () => void): () => void {
  reconnectListeners.add(listener);
  return () => void reconnectListeners.delete(listener);
}

export const socket = createClient({
  url: websocketUrl,
  // Read at every (re)connection, so a new sign-in is used by the next socket.
  connectionParams: () => {
    const token = session.get()?.token;
    return token ? { Authorization: `Bearer ${token}` } : {};
  },
  keepAlive: 10_000, // ping every 10 s: a dead connection is noticed and replaced
  retryAttempts: Infinity,
  shouldRetry: () => true,
  // 0.5 s, 1 s, 2 s, then 3 s at most, with jitter so clients do not come back in step.
  retryWait: (retries) =>
    new Promise((resolve) => setTimeout(resolve, Math.min(3000, 500 * 2 ** retries) * (0.75 + Math.random() / 2))),
  on: {
    connecting: (isRetry) => connection.set(isRetry ? "reconnecting" : "connecting"),
    connected: (_socket, _payload, wasRetry) => {
      connection.set("live");
      if (wasRetry) reconnectListeners.forEach((l) => l());
    },
    closed: () => {
      clearTimeout(pongTimeout);
      if (connection.get() === "live") connection.set("reconnecting");
    },
    // A ping without its pong within 5 s: the connection is dead (a laptop that slept,
    // a proxy that dropped it); close it, and the client opens a new one.
    ping: (received) => {
      if (!received) pongTimeout = setTimeout(() => socket.terminate(), 5_000);
    },
    pong: (received) => {
      if (received) clearTimeout(pongTimeout);
    },
  },
});
let pongTimeout: ReturnType<typeof setTimeout> | undefined;

const ws = new GraphQLWsLink(socket);

const isSubscription = ({ query }: ApolloLink.Operation) => {
  const def = getMainDefinition(query);
  return def.kind === "OperationDefinition" && def.operation === "subscription";
};

export const client = new ApolloClient({
  cache: new InMemoryCache({
    // A cart's lines come whole with every answer: the new list replaces the old one.
    typePolicies: { Cart: { fields: { items: { merge: false } } } },
  }),
  link: ApolloLink.split(isSubscription, ws, http),
});

// Another customer (or none): forget what the last one saw, and reconnect the socket
// with the new token (running subscriptions come back on the new socket).
let lastToken = session.get()?.token;
session.subscribe(() => {
  const token = session.get()?.token;
  if (token === lastToken) return;
  lastToken = token;
  socket.terminate();
  void client.clearStore();
});
