import { Fragment, useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { Link } from "react-router";
import { api, WALLET_HISTORY_CSV_URL } from "../api/endpoints";
import { ApiError } from "../api/errors";
import type { HistoryLine, LedgerLine, PaymentResult } from "../api/types";
import { pageConfig } from "../config";
import { ErrorBanner, Notice } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { Busy, Loading } from "../components/Progress";
import { useFormErrors } from "../lib/forms";
import { useInterval, useLoad } from "../lib/hooks";
import { Money } from "../components/Money";
import { StoragePanel } from "../components/StoragePanel";
import { creditsToMicros, formatCredits, formatDateTime } from "../lib/money";
import { stripeLoad, type StripeClient, type StripeElement, type StripeElements } from "../lib/stripe";
import { uuid4 } from "../lib/uuid";

function Balances({ reloadKey }: { reloadKey: number }) {
  const wallet = useLoad(() => api.wallet(), [reloadKey]);
  if (wallet.error) return <ErrorBanner error={wallet.error} />;
  if (!wallet.data) return <Loading />;
  return (
    <dl className="balances" aria-live="polite">
      <div>
        <dt>Balance</dt>
        <dd data-testid="balance">{formatCredits(wallet.data.balance_micros)}</dd>
      </div>
      <div>
        <dt>Held for running jobs</dt>
        <dd data-testid="held">{formatCredits(wallet.data.held_micros)}</dd>
      </div>
      <div>
        <dt>Available</dt>
        <dd data-testid="available">{formatCredits(wallet.data.available_micros)}</dd>
      </div>
    </dl>
  );
}

/** Stripe's Payment Element, mounted once Stripe.js has loaded (lazily). */
function StripePayment({ payment, onDone }: { payment: PaymentResult; onDone: () => void }) {
  const target = useRef<HTMLDivElement>(null);
  const [stripe, setStripe] = useState<{ client: StripeClient; elements: StripeElements } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const config = pageConfig();
  const url = config.stripe_js_url;
  const key = payment.publishable_key ?? config.stripe_publishable_key;

  useEffect(() => {
    let element: StripeElement | null = null;
    let cancelled = false;
    if (!url || !key || !payment.client_secret) {
      setError("Card payments are not configured on this server.");
      return;
    }
    stripeLoad(url).then(
      (factory) => {
        if (cancelled || !target.current) return;
        const client = factory(key);
        const elements = client.elements({ clientSecret: payment.client_secret! });
        element = elements.create("payment");
        element.mount(target.current);
        setStripe({ client, elements });
      },
      (err: Error) => setError(err.message),
    );
    return () => {
      cancelled = true;
      element?.destroy();
    };
  }, [url, key, payment.client_secret]);

  const pay = async () => {
    if (!stripe) return;
    setBusy(true);
    setError(null);
    const result = await stripe.client.confirmPayment({ elements: stripe.elements, redirect: "if_required" });
    setBusy(false);
    if (result.error) setError(result.error.message ?? "The payment failed.");
    else onDone();
  };

  return (
    <div className="stripe-box">
      {!stripe && !error && <Busy label="Loading the payment form…" />}
      <div ref={target} />
      {error && <p className="field-error" role="alert">{error}</p>}
      <button type="button" className="primary" disabled={!stripe || busy} onClick={() => void pay()}>
        {busy ? "Paying…" : "Pay"}
      </button>
    </div>
  );
}

/** Buying credits: the demo provider credits at once, Stripe takes the card in its Payment
 * Element. `create` is the payment's POST (the user's wallet, or an organisation's). */
export function BuyCredits({
  onCredited,
  onPaid,
  create = api.paymentCreate,
  heading = "Buy credits",
}: {
  onCredited: () => void;
  onPaid: () => void;
  create?: (amountMicros: number, idempotencyKey: string) => Promise<PaymentResult>;
  heading?: string;
}) {
  const config = pageConfig();
  const errors = useFormErrors(["amount_micros"]);
  const [amount, setAmount] = useState("10");
  const [busy, setBusy] = useState(false);
  const [payment, setPayment] = useState<PaymentResult | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [localError, setLocalError] = useState<string | undefined>();
  const pendingKey = useRef<{ key: string; amount: number } | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    setNotice(null);
    const micros = creditsToMicros(amount);
    if (!micros) {
      setLocalError("Enter an amount in credits, e.g. 10 or 2.50.");
      return;
    }
    setLocalError(undefined);
    if (!pendingKey.current || pendingKey.current.amount !== micros) pendingKey.current = { key: uuid4(), amount: micros };
    setBusy(true);
    try {
      const result = await create(micros, pendingKey.current.key);
      pendingKey.current = null;
      if (result.provider === "stripe" && result.client_secret) {
        setPayment(result);
      } else {
        setNotice(`${formatCredits(result.amount_micros ?? micros)} added (demo payment).`);
        onCredited();
      }
    } catch (err) {
      if (err instanceof ApiError && err.status > 0 && err.status < 500) pendingKey.current = null;
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  const limits =
    config.purchase_min_micros && config.purchase_max_micros
      ? `Between ${formatCredits(config.purchase_min_micros)} and ${formatCredits(config.purchase_max_micros)}. `
      : "";

  return (
    <section aria-labelledby="buy-h">
      <h2 id="buy-h">{heading}</h2>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      {notice && <Notice>{notice}</Notice>}
      {payment ? (
        <StripePayment
          payment={payment}
          onDone={() => {
            setPayment(null);
            setNotice("Payment received. Credits appear as soon as the payment provider confirms it.");
            onPaid();
          }}
        />
      ) : (
        <form onSubmit={(e) => void submit(e)} noValidate className="inline-form">
          <Field label="Amount (credits)" error={errors.fieldError("amount_micros") ?? localError} hint={`${limits}1 credit = 1 USD.${config.payment_provider === "demo" ? " Demo payments: credited at once, no card needed." : ""}`}>
            <input inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />
          </Field>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? "Working…" : config.payment_provider === "stripe" ? "Continue to payment" : "Buy credits"}
          </button>
        </form>
      )}
    </section>
  );
}

const KINDS: Record<LedgerLine["kind"], string> = {
  purchase: "Credits bought",
  grant: "Credits granted by staff",
  adjustment: "Adjustment by staff",
  hold: "Hold for a job",
  capture: "Usage charge",
  release: "Unused hold returned",
  reversal: "Charges reversed (lost attempt)",
  maturity: "Earnings matured",
  refund: "Refund of a purchase",
  payout: "Payout",
  payout_paid: "Payout paid",
  payout_reversal: "Payout failed: returned",
};

function lineKind(kind: LedgerLine["kind"] | string): string {
  return KINDS[kind as LedgerLine["kind"]] ?? kind.replace(/_/g, " ");
}

/** The ledger entries behind one history line, loaded when the line is opened. */
function LineEntries({ line }: { line: HistoryLine }) {
  const of = line.job_id !== null ? { job: line.job_id } : { transaction: line.transaction_id ?? undefined };
  const entries = useLoad(() => api.transactions(1, of), [line.job_id, line.transaction_id]);
  if (entries.error) return <ErrorBanner error={entries.error} />;
  if (!entries.data) return <Loading />;
  return (
    <div className="table-wrap">
      <table className="entries" data-testid="line-entries">
        <caption>
          Ledger entries{entries.data.count > entries.data.results.length ? ` (the latest ${entries.data.results.length} of ${entries.data.count})` : ""}
        </caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Entry</th>
            <th scope="col">Account</th>
            <th scope="col" className="num">Amount</th>
          </tr>
        </thead>
        <tbody>
          {entries.data.results.map((entry) => (
            <tr key={entry.id}>
              <td>{formatDateTime(entry.created_at)}</td>
              <td>
                {lineKind(entry.kind)}
                {entry.memo && <span className="muted"> — {entry.memo}</span>}
              </td>
              <td>{ACCOUNTS[entry.account] ?? entry.account}</td>
              <td className={`num ${entry.amount_micros < 0 ? "neg" : "pos"}`}>
                <Money micros={entry.amount_micros} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const ACCOUNTS: Record<string, string> = {
  wallet: "wallet",
  escrow: "held for the job",
  earnings_pending: "earnings (pending)",
  earnings_available: "earnings (available)",
};

/** What one history line says, in words: the job's cost and what came back, or the kind. */
function lineSummary(line: HistoryLine): { what: ReactNode; detail: string } {
  if (line.line === "job" && line.job_id !== null) {
    const parts = [`cost ${formatCredits(line.cost_micros)}`];
    if (line.held_micros > 0) parts.push(`${formatCredits(line.held_micros)} still held`);
    else parts.push(`${formatCredits(line.refund_micros)} of the ${formatCredits(line.hold_micros)} hold returned`);
    if (line.reversed_micros > 0) parts.push(`${formatCredits(line.reversed_micros)} of charges reversed`);
    return {
      what: (
        <>
          Job <Link to={`/jobs/${line.job_id}`}>{line.job_name || `#${line.job_id}`}</Link> <span className="muted">#{line.job_id}</span>
        </>
      ),
      detail: parts.join(" · "),
    };
  }
  if (line.line === "earnings" && line.job_id !== null) {
    return { what: <>Earnings from job #{line.job_id}{line.job_name ? ` (${line.job_name})` : ""}</>, detail: "after the platform fee" };
  }
  return { what: lineKind(line.line), detail: line.memo };
}

function History({ reloadKey }: { reloadKey: number }) {
  const [page, setPage] = useState(1);
  const [open, setOpen] = useState<string | null>(null);
  const lines = useLoad(() => api.walletHistory(page), [page, reloadKey]);
  const keyOf = (line: HistoryLine) => `${line.line}-${line.job_id ?? ""}-${line.transaction_id ?? ""}`;
  return (
    <section aria-labelledby="tx-h">
      <div className="section-head">
        <h2 id="tx-h">History</h2>
        <a className="button" href={WALLET_HISTORY_CSV_URL} download>
          Download CSV
        </a>
      </div>
      {lines.error !== null && <ErrorBanner error={lines.error} />}
      {!lines.data && lines.loading && <Loading />}
      {lines.data && lines.data.results.length === 0 && <p>No transactions yet.</p>}
      {lines.data && lines.data.results.length > 0 && (
        <>
          <div className="table-wrap">
            <table data-testid="transactions">
              <caption className="visually-hidden">Wallet history, newest first: one line per job, purchase and payout</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">What</th>
                  <th scope="col" className="num">Amount</th>
                  <th scope="col">
                    <span className="visually-hidden">Entries</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {lines.data.results.map((line) => {
                  const key = keyOf(line);
                  const { what, detail } = lineSummary(line);
                  const isOpen = open === key;
                  return (
                    <Fragment key={key}>
                      <tr data-testid="history-line">
                        <td>{formatDateTime(line.at)}</td>
                        <td className="wrap">
                          {what}
                          {detail && <div className="muted small">{detail}</div>}
                        </td>
                        <td className={`num ${line.amount_micros < 0 ? "neg" : "pos"}`}>
                          <Money micros={line.amount_micros} />
                        </td>
                        <td>
                          <button
                            type="button"
                            className="link-button"
                            aria-expanded={isOpen}
                            aria-controls={`entries-${key}`}
                            onClick={() => setOpen(isOpen ? null : key)}
                          >
                            {isOpen ? "Hide entries" : `Entries (${line.entry_count})`}
                          </button>
                        </td>
                      </tr>
                      {isOpen && (
                        <tr id={`entries-${key}`}>
                          <td colSpan={4}>
                            <LineEntries line={line} />
                          </td>
                        </tr>
                      )}
                    </Fragment>
                  );
                })}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="History pages">
            <button type="button" disabled={!lines.data.previous} onClick={() => setPage(page - 1)}>Previous</button>
            <span>Page {page}</span>
            <button type="button" disabled={!lines.data.next} onClick={() => setPage(page + 1)}>Next</button>
          </nav>
        </>
      )}
    </section>
  );
}

export function WalletPage() {
  const [reloadKey, setReloadKey] = useState(0);
  const [pollUntil, setPollUntil] = useState(0);
  const bump = () => setReloadKey((k) => k + 1);
  // A card payment is credited by the provider's webhook, a moment later: watch for it.
  useInterval(() => (Date.now() < pollUntil ? bump() : setPollUntil(0)), pollUntil ? 2000 : null);
  return (
    <section>
      <h1>Wallet</h1>
      <Balances reloadKey={reloadKey} />
      <BuyCredits onCredited={bump} onPaid={() => setPollUntil(Date.now() + 60_000)} />
      <History reloadKey={reloadKey} />
      <StoragePanel />
    </section>
  );
}
