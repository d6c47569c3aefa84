import { describe, expect, it } from "vitest";
import type { PoolSettings } from "../api/pools";
import { bucketProblem, cidrProblem, hostPatternProblem, poolFormFrom, poolFormProblems, poolPatchFrom, poolSettingsFrom } from "./poolSettings";

const SAVED: PoolSettings = {
  pool_required: false,
  pool_hidden: true,
  pool_fetch_networks: ["10.20.0.0/16"],
  pool_fetch_hosts: [],
  pool_job_networks: [],
  pool_members_free: false,
  pool_output_store: {},
  pool_logs: "central",
  pool_airlock: false,
};

describe("the pool settings' light checks", () => {
  it("takes networks in CIDR form and names what is wrong with the others", () => {
    expect(cidrProblem("10.20.0.0/16")).toBeNull();
    expect(cidrProblem("192.168.1.0/24")).toBeNull();
    expect(cidrProblem("fd00::/8")).toBeNull();
    expect(cidrProblem("10.20.0.1/16")).toBe("“10.20.0.1/16” has host bits set: the network is 10.20.0.0/16.");
    expect(cidrProblem("10.300.0.0/16")).toMatch(/0–255/);
    expect(cidrProblem("10.0.0.0/33")).toMatch(/prefix 0–32/);
    expect(cidrProblem("10.0.0.0")).toMatch(/not a network in CIDR form/);
    expect(cidrProblem("data.example.org")).toMatch(/not a network/);
  });

  it("takes host names and *.domain, not a whole top-level domain or a URL", () => {
    expect(hostPatternProblem("data.example.org")).toBeNull();
    expect(hostPatternProblem("*.example.org")).toBeNull();
    expect(hostPatternProblem("*.org")).toMatch(/whole top-level domain/);
    expect(hostPatternProblem("https://data.example.org")).toMatch(/not a host name/);
    expect(hostPatternProblem("a..b")).toMatch(/not a host name/);
  });

  it("follows S3's bucket rules", () => {
    expect(bucketProblem("pool-outputs")).toBeNull();
    expect(bucketProblem("Pool")).not.toBeNull();
    expect(bucketProblem("ab")).not.toBeNull();
    expect(bucketProblem("10.0.0.1")).not.toBeNull();
  });

  it("names each problem by the server's field, a list's by its line, and refuses the whole internet for jobs", () => {
    const form = {
      ...poolFormFrom(SAVED),
      fetchNetworks: "10.20.0.0/16\n\n10.1.2.3/8",
      fetchHosts: "*.org",
      jobNetworks: "0.0.0.0/0",
      storeBucket: "pool-outputs",
    };
    expect(poolFormProblems(form)).toEqual({
      pool_fetch_networks: "Line 3: “10.1.2.3/8” has host bits set: the network is 10.0.0.0/8.",
      pool_fetch_hosts: expect.stringMatching(/^Line 1: “\*\.org” covers a whole top-level domain/),
      pool_job_networks: "Line 1: “0.0.0.0/0” is the whole internet: a pool job may reach only internal networks.",
      "pool_output_store.endpoint_url": expect.stringMatching(/endpoint URL/),
    });
    expect(poolFormProblems({ ...poolFormFrom(SAVED), logs: "store" })).toEqual({
      "pool_output_store.endpoint_url": "Logs kept on the pool's store need a store: give its endpoint URL and bucket.",
    });
    expect(poolFormProblems(poolFormFrom(SAVED))).toEqual({});
  });
});

describe("the PATCH body", () => {
  it("sends only what changed, lists without blank lines, the store whole or {}", () => {
    const form = { ...poolFormFrom(SAVED), required: true, fetchHosts: " Data.Example.org \n\n", storeEndpoint: "https://s3.example.org", storeBucket: "out" };
    expect(poolPatchFrom(form, SAVED)).toEqual({
      pool_required: true,
      pool_fetch_hosts: ["data.example.org"],
      pool_output_store: { endpoint_url: "https://s3.example.org", bucket: "out", prefix: "", region: "" },
    });
    expect(poolPatchFrom(poolFormFrom(SAVED), SAVED)).toEqual({});
    expect(poolSettingsFrom(poolFormFrom(SAVED)).pool_output_store).toEqual({});
  });
});
