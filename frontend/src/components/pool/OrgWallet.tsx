import { useState } from "react";
import { Link } from "react-router";
import { ApiError } from "../../api/errors";
import { pools } from "../../api/pools";
import { useInterval, useLoad } from "../../lib/hooks";
import { creditsWords, formatCredits, formatDateTime } from "../../lib/money";
import { BuyCredits } from "../../pages/Wallet";
import { ErrorBanner } from "../ErrorBanner";
import { Money } from "../Money";
import { Loading } from "../Progress";

const KINDS: Record<string, string> = {
  purchase: "Credits bought",
  grant: "Credits granted by staff",
  adjustment: "Adjustment by staff",
  hold: "Hold for a member's job",
  capture: "Usage charge",
  release: "Unused hold returned",
  reversal: "Charges reversed (lost attempt)",
  refund: "Refund of a purchase",
};

/** The member's own month: what they spent (charged and held) against their cap. */
export function MyMonth({ orgId }: { orgId: number }) {
  const month = useLoad(() => pools.walletMe(orgId), [orgId]);
  if (month.error !== null) return month.error instanceof ApiError && month.error.status === 404 ? null : <ErrorBanner error={month.error} />;
  if (!month.data) return <Loading />;
  const { spent_micros: spent, cap_micros: cap } = month.data;
  return (
    <section aria-labelledby="my-month-h">
      <h3 id="my-month-h">Your month</h3>
      {cap === null ? (
        <p data-testid="my-month">
          You have spent <Money micros={spent} /> of the organisation&apos;s wallet this month (UTC). You have no cap of your own: the wallet&apos;s
          balance is the limit.
        </p>
      ) : (
        <>
          <p data-testid="my-month">
            You have spent <Money micros={spent} /> of your <Money micros={cap} /> monthly cap (UTC month, open jobs&apos; holds included):{" "}
            {spent >= cap ? "nothing is left this month." : `${creditsWords(cap - spent)} left.`}
          </p>
          <progress max={cap} value={Math.min(spent, cap)} aria-label="Your month's spending against your cap" />
        </>
      )}
    </section>
  );
}

function Transactions({ orgId, reloadKey }: { orgId: number; reloadKey: number }) {
  const [page, setPage] = useState(1);
  const lines = useLoad(() => pools.walletTransactions(orgId, page), [orgId, page, reloadKey]);
  return (
    <section aria-labelledby="org-tx-h">
      <h3 id="org-tx-h">Transactions</h3>
      {lines.error !== null && <ErrorBanner error={lines.error} />}
      {!lines.data && lines.loading && <Loading />}
      {lines.data && lines.data.results.length === 0 && <p>No transactions yet.</p>}
      {lines.data && lines.data.results.length > 0 && (
        <>
          <div className="table-wrap">
            <table className="stack" data-testid="org-transactions">
              <caption className="visually-hidden">The organisation wallet&apos;s transactions, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">What</th>
                  <th scope="col">Member</th>
                  <th scope="col" className="num">Amount</th>
                </tr>
              </thead>
              <tbody>
                {lines.data.results.map((line) => (
                  <tr key={line.id}>
                    <td data-label="When">{formatDateTime(line.created_at)}</td>
                    <td data-label="What" className="wrap">
                      {KINDS[line.kind] ?? line.kind.replace(/_/g, " ")}
                      {line.job_id ? (
                        <>
                          {" "}
                          · <Link to={`/jobs/${line.job_id}`}>job #{line.job_id}</Link>
                        </>
                      ) : null}
                      {line.memo && <div className="muted small">{line.memo}</div>}
                    </td>
                    <td data-label="Member">{line.member_username ?? line.by_username ?? "—"}</td>
                    <td data-label="Amount" className={`num ${line.amount_micros < 0 ? "neg" : "pos"}`}>
                      <Money micros={line.amount_micros} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="Transaction pages">
            <button type="button" disabled={!lines.data.previous} onClick={() => setPage(page - 1)}>
              Previous
            </button>
            <span>Page {page}</span>
            <button type="button" disabled={!lines.data.next} onClick={() => setPage(page + 1)}>
              Next
            </button>
          </nav>
        </>
      )}
    </section>
  );
}

function Balances({ orgId, reloadKey }: { orgId: number; reloadKey: number }) {
  const wallet = useLoad(() => pools.wallet(orgId), [orgId, reloadKey]);
  if (wallet.error !== null) return <ErrorBanner error={wallet.error} />;
  if (!wallet.data) return <Loading />;
  return (
    <dl className="balances" aria-live="polite" data-testid="org-balances">
      <div>
        <dt>Balance</dt>
        <dd>{formatCredits(wallet.data.balance_micros)}</dd>
      </div>
      <div>
        <dt>Held for members&apos; running jobs</dt>
        <dd>{formatCredits(wallet.data.held_micros)}</dd>
      </div>
      <div>
        <dt>Available</dt>
        <dd>{formatCredits(wallet.data.available_micros)}</dd>
      </div>
    </dl>
  );
}

export function OrgWalletSection({ orgId, isAdmin }: { orgId: number; isAdmin: boolean }) {
  const [reloadKey, setReloadKey] = useState(0);
  const [pollUntil, setPollUntil] = useState(0);
  const bump = () => setReloadKey((k) => k + 1);
  useInterval(() => (Date.now() < pollUntil ? bump() : setPollUntil(0)), pollUntil ? 2000 : null);
  return (
    <section aria-labelledby="org-wallet-h">
      <h2 id="org-wallet-h">Wallet</h2>
      <p className="small">Jobs run in the pool are paid from this wallet; each member within the monthly cap the admins set.</p>
      <MyMonth orgId={orgId} />
      {isAdmin && (
        <>
          <Balances orgId={orgId} reloadKey={reloadKey} />
          <BuyCredits
            heading="Buy credits for the organisation"
            create={(micros, key) => pools.paymentCreate(orgId, micros, key)}
            onCredited={bump}
            onPaid={() => setPollUntil(Date.now() + 60_000)}
          />
          <Transactions orgId={orgId} reloadKey={reloadKey} />
        </>
      )}
    </section>
  );
}
