/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The build is served by Django (whitenoise) under STATIC_URL, so every asset URL starts with
// /static/. `index.html` is read by config/spa.py and returned for every app route.
// During `npm run dev`, API and websocket calls are proxied to daphne on :8000.
export default defineConfig({
  base: "/static/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // No code from a CDN: everything, fonts included, is bundled (the app uses system fonts).
    assetsInlineLimit: 4096,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/admin": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    css: false,
    // The page tests drive whole forms (hashing, uploads): seconds on a loaded 2-core CI box.
    testTimeout: 20_000,
    // Vitest resolves packages as Node would; the app is built with tus-js-client's browser
    // build (package.json "browser"), whose file reader takes a File, so the tests use it too.
    alias: [{ find: /^tus-js-client$/, replacement: "tus-js-client/lib.esm/browser/index.js" }],
  },
});
