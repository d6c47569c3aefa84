// The pool settings form (docs/pools.md): the text people type, the light checks done before
// the server's own (which stay the rule: its field errors are shown beside the same fields),
// and the PATCH body (only what changed).

import type { OutputStore, PoolLogs, PoolSettings } from "../api/pools";

export interface PoolForm {
  required: boolean;
  hidden: boolean;
  /** One entry a line. */
  fetchNetworks: string;
  fetchHosts: string;
  jobNetworks: string;
  membersFree: boolean;
  storeEndpoint: string;
  storeBucket: string;
  storePrefix: string;
  storeRegion: string;
  logs: PoolLogs;
  airlock: boolean;
}

export function poolFormFrom(settings: PoolSettings): PoolForm {
  const store: Partial<OutputStore> = settings.pool_output_store ?? {};
  return {
    required: settings.pool_required,
    hidden: settings.pool_hidden,
    fetchNetworks: (settings.pool_fetch_networks ?? []).join("\n"),
    fetchHosts: (settings.pool_fetch_hosts ?? []).join("\n"),
    jobNetworks: (settings.pool_job_networks ?? []).join("\n"),
    membersFree: settings.pool_members_free,
    storeEndpoint: store.endpoint_url ?? "",
    storeBucket: store.bucket ?? "",
    storePrefix: store.prefix ?? "",
    storeRegion: store.region ?? "",
    logs: settings.pool_logs ?? "central",
    airlock: settings.pool_airlock,
  };
}

/** The lines of a list field, trimmed, blank lines skipped. */
export function listLines(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Why `text` is not a network in CIDR form ("10.0.0.0/8", "fd00::/8"), or null. IPv4 is
 * checked fully (host bits included); IPv6 lightly (the server checks it with `ipaddress`). */
export function cidrProblem(text: string): string | null {
  const v4 = IPV4.exec(text);
  if (v4) {
    const octets = v4.slice(1, 5).map(Number);
    const bits = Number(v4[5]);
    if (octets.some((o) => o > 255) || bits > 32) return `“${text}” is not a network: each of the four numbers is 0–255, the prefix 0–32.`;
    const value = octets.reduce((acc, o) => acc * 256 + o, 0);
    const hostBits = 2 ** (32 - bits);
    if (value % hostBits !== 0) {
      const base = value - (value % hostBits);
      const start = [24, 16, 8, 0].map((shift) => Math.floor(base / 2 ** shift) % 256).join(".");
      return `“${text}” has host bits set: the network is ${start}/${bits}.`;
    }
    return null;
  }
  const v6 = /^([0-9a-f:]+)\/(\d{1,3})$/i.exec(text);
  if (v6 && v6[1]!.includes(":") && Number(v6[2]) <= 128 && (v6[1]!.match(/::/g) ?? []).length <= 1) return null;
  return `“${text}” is not a network in CIDR form, such as 10.20.0.0/16 or fd00::/8.`;
}

const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const HOST_PATTERN = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`, "i");

/** Why `text` is not a host name or `*.domain`, or null. */
export function hostPatternProblem(text: string): string | null {
  if (text.length > 253 || !HOST_PATTERN.test(text)) return `“${text}” is not a host name: use a name such as data.example.org, or *.example.org for every name under it.`;
  if (text.startsWith("*.") && !text.slice(2).includes(".")) return `“${text}” covers a whole top-level domain: name the institution's domain, such as *.example.org.`;
  return null;
}

/** S3's bucket rules: 3–63 characters, lower-case letters, digits, dots and hyphens, starting
 * and ending with a letter or digit, not an IP address. */
export function bucketProblem(text: string): string | null {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(text) || text.includes("..") || /^\d+\.\d+\.\d+\.\d+$/.test(text))
    return "A bucket name is 3–63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit.";
  return null;
}

function lineProblems(text: string, check: (line: string) => string | null, extra?: (line: string) => string | null): string | undefined {
  const lines = text.split("\n");
  const problems: string[] = [];
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (!line) return;
    const problem = check(line) ?? extra?.(line) ?? null;
    if (problem) problems.push(`Line ${index + 1}: ${problem}`);
  });
  return problems.length ? problems.join(" ") : undefined;
}

/** The form's problems, by the server's field names (so they sit where the server's would). */
export function poolFormProblems(form: PoolForm): Record<string, string> {
  const problems: Record<string, string> = {};
  const fetchNetworks = lineProblems(form.fetchNetworks, cidrProblem);
  if (fetchNetworks) problems.pool_fetch_networks = fetchNetworks;
  const fetchHosts = lineProblems(form.fetchHosts, hostPatternProblem);
  if (fetchHosts) problems.pool_fetch_hosts = fetchHosts;
  const jobNetworks = lineProblems(form.jobNetworks, cidrProblem, (line) =>
    /^(0\.0\.0\.0\/0|::\/0)$/.test(line) ? `“${line}” is the whole internet: a pool job may reach only internal networks.` : null,
  );
  if (jobNetworks) problems.pool_job_networks = jobNetworks;
  const anyStore = [form.storeEndpoint, form.storeBucket, form.storePrefix, form.storeRegion].some((v) => v.trim());
  if (anyStore) {
    const endpoint = form.storeEndpoint.trim();
    if (!endpoint) problems["pool_output_store.endpoint_url"] = "Give the store's endpoint URL, or clear every store field to keep outputs on the central store.";
    else if (!/^https?:\/\/[^\s/@]+(?::\d+)?(?:\/\S*)?$/i.test(endpoint)) problems["pool_output_store.endpoint_url"] = "An http:// or https:// URL, such as https://s3.example.org.";
    const bucket = form.storeBucket.trim();
    if (!bucket) problems["pool_output_store.bucket"] = "Give the bucket the outputs go to.";
    else {
      const bad = bucketProblem(bucket);
      if (bad) problems["pool_output_store.bucket"] = bad;
    }
  }
  if (form.logs === "store" && !anyStore)
    problems["pool_output_store.endpoint_url"] = "Logs kept on the pool's store need a store: give its endpoint URL and bucket.";
  return problems;
}

/** The settings the form says. */
export function poolSettingsFrom(form: PoolForm): PoolSettings {
  const anyStore = [form.storeEndpoint, form.storeBucket, form.storePrefix, form.storeRegion].some((v) => v.trim());
  return {
    pool_required: form.required,
    pool_hidden: form.hidden,
    pool_fetch_networks: listLines(form.fetchNetworks),
    pool_fetch_hosts: listLines(form.fetchHosts).map((h) => h.toLowerCase()),
    pool_job_networks: listLines(form.jobNetworks),
    pool_members_free: form.membersFree,
    pool_output_store: anyStore
      ? { endpoint_url: form.storeEndpoint.trim(), bucket: form.storeBucket.trim(), prefix: form.storePrefix.trim(), region: form.storeRegion.trim() }
      : {},
    pool_logs: form.logs,
    pool_airlock: form.airlock,
  };
}

/** Only the fields that differ from `saved` (compared as JSON). */
export function poolPatchFrom(form: PoolForm, saved: PoolSettings): Partial<PoolSettings> {
  const next = poolSettingsFrom(form);
  const patch: Partial<PoolSettings> = {};
  for (const key of Object.keys(next) as (keyof PoolSettings)[]) {
    if (JSON.stringify(next[key]) !== JSON.stringify(saved[key] ?? null)) (patch as Record<string, unknown>)[key] = next[key];
  }
  return patch;
}
