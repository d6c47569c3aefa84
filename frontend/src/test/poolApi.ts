/** Pool settings as the server names them (no `pool_` prefix): what a mocked
 * `GET /organisations/{id}/pool/` answers (src/api/pools.ts converts). */
export function asApiSettings(settings: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(settings).map(([key, value]) => [key.replace(/^pool_/, ""), value]));
}
