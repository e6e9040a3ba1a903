import { defineConfig, type ProxyOptions } from "vite";
import react from "@vitejs/plugin-react";

// The checkout service the dev server forwards to (`make run` serves on :8080).
const api = process.env.CHECKOUT_API ?? "http://127.0.0.1:8080";

// Same origin for the browser: the page, /graphql (HTTP and WebSocket) and /dev/token.
// The Host header is kept (no changeOrigin), so the service's WebSocket origin check
// sees the page's own origin.
const proxy: Record<string, ProxyOptions> = {
  "/graphql": { target: api, ws: true },
  "/dev": { target: api },
};

export default defineConfig({
  plugins: [react()],
  server: { host: "127.0.0.1", port: 5173, proxy },
  preview: { host: "127.0.0.1", port: 4173, proxy },
  build: { target: "es2022" },
});
