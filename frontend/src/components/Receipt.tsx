import type { Receipt, ReceiptAttempt } from "../api/types";
import { formatCredits, formatDuration } from "../lib/money";

const num = (v: unknown): number | null => (typeof v === "number" ? v : null);

function Row({ label, value }: { label: string; value: string }) {
  return (
    <tr>
      <th scope="row">{label}</th>
      <td className="num">{value}</td>
    </tr>
  );
}

function AttemptTable({ a }: { a: ReceiptAttempt }) {
  const coreSeconds = num(a.cpu_core_seconds) ?? num(a.cpu_seconds);
  return (
    <table className="receipt">
      <caption>
        Attempt {a.attempt}
        {a.status ? ` — ${a.status}` : ""}
        {a.host !== undefined && a.host !== null ? ` on host #${a.host}` : ""}
      </caption>
      <tbody>
        {num(a.wall_seconds) !== null && <Row label="Wall time" value={formatDuration(a.wall_seconds)} />}
        {coreSeconds !== null && <Row label="CPU core-seconds" value={coreSeconds.toLocaleString()} />}
        {num(a.memory_gb_seconds) !== null && <Row label="Memory GB-seconds" value={a.memory_gb_seconds!.toLocaleString()} />}
        {num(a.gpu_seconds) !== null && <Row label="GPU-seconds" value={a.gpu_seconds!.toLocaleString()} />}
        {num(a.cpu_core_hour_micros) !== null && <Row label="CPU rate" value={`${formatCredits(a.cpu_core_hour_micros)}/core-h`} />}
        {num(a.memory_gb_hour_micros) !== null && <Row label="Memory rate" value={`${formatCredits(a.memory_gb_hour_micros)}/GB-h`} />}
        {num(a.gpu_hour_micros) !== null && <Row label="GPU rate" value={`${formatCredits(a.gpu_hour_micros)}/GPU-h`} />}
        {num(a.gross_micros) !== null && <Row label="Charged" value={formatCredits(a.gross_micros, 6)} />}
        {num(a.fee_micros) !== null && <Row label="of which platform fee" value={formatCredits(a.fee_micros, 6)} />}
        {num(a.host_net_micros) !== null && <Row label="of which host earns" value={formatCredits(a.host_net_micros, 6)} />}
        {num(a.reversed_micros) !== null && a.reversed_micros !== 0 && <Row label="Reversed (lost attempt)" value={formatCredits(a.reversed_micros, 6)} />}
      </tbody>
    </table>
  );
}

/** The receipt: per-attempt usage, rates and charges, then the totals. */
export function ReceiptView({ receipt }: { receipt: Receipt }) {
  const attempts = receipt.attempts ?? [];
  const totals: [string, unknown][] = [
    ["Total charged", receipt.charged_micros ?? receipt.total_micros ?? receipt.gross_micros],
    ["Platform fee", receipt.fee_micros],
    ["Host earned", receipt.host_net_micros],
    ["Reversed", receipt.reversed_micros],
    ["Refunded to your wallet", receipt.released_micros ?? receipt.refunded_micros ?? receipt.refunds_micros],
  ];
  return (
    <div className="receipt-view" data-testid="receipt">
      {attempts.map((a) => (
        <AttemptTable key={a.attempt} a={a} />
      ))}
      <table className="receipt">
        <caption>Totals</caption>
        <tbody>
          {totals
            .filter(([, v]) => typeof v === "number")
            .map(([label, v]) => (
              <Row key={label} label={label} value={formatCredits(v as number, 6)} />
            ))}
        </tbody>
      </table>
    </div>
  );
}

/** What the renter paid according to the receipt (used by the e2e test too). */
export function receiptTotal(receipt: Receipt): number | null {
  return num(receipt.charged_micros) ?? num(receipt.total_micros) ?? num(receipt.gross_micros);
}
