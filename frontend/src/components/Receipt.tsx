import type { ReactNode } from "react";
import type { Receipt, ReceiptAttempt } from "../api/types";
import { statusLabel } from "../lib/jobStatus";
import { formatDateTime, formatDuration, formatMemory } from "../lib/money";
import { Money as Amount } from "./Money";

const RESOURCE: Record<string, string> = { cpu: "CPU time used", memory: "Memory reserved", gpu: "GPUs reserved" };
const UNIT_RATE: Record<string, string> = { "core-second": "core-hour", "GB-second": "GB-hour", "GPU-second": "GPU-hour" };

function Money({ micros }: { micros: number }) {
  return (
    <td className="num">
      <Amount micros={micros} />
    </td>
  );
}

type ShowHost = (id: number) => ReactNode;

function AttemptTable({ a, showHost }: { a: ReceiptAttempt; showHost?: ShowHost }) {
  return (
    <table className="receipt">
      <caption>
        Attempt {a.attempt} on {showHost ? showHost(a.host_id) : `host #${a.host_id}`} — {statusLabel(a.status)}
        {a.started_at && (
          <span className="muted small">
            {" "}
            · {formatDateTime(a.started_at)} to {formatDateTime(a.finished_at)}, {formatDuration(Number(a.wall_seconds))} wall time,{" "}
            {a.memory_peak_mb > 0 ? `peak memory ${formatMemory(a.memory_peak_mb)}` : "too short to measure its memory"}
          </span>
        )}
      </caption>
      <thead>
        <tr>
          <th scope="col">Usage</th>
          <th scope="col" className="num">Quantity</th>
          <th scope="col" className="num">Rate</th>
        </tr>
      </thead>
      <tbody>
        {a.usage.map((line) => (
          <tr key={line.resource}>
            <th scope="row">{RESOURCE[line.resource] ?? line.resource}</th>
            <td className="num">
              {line.quantity} {line.unit}s
            </td>
            <td className="num">
              <Amount micros={line.rate_micros_per_hour} suffix={`/${UNIT_RATE[line.unit] ?? "hour"}`} />
            </td>
          </tr>
        ))}
      </tbody>
      <tbody>
        <tr>
          <th scope="row" colSpan={2}>Usage at these rates</th>
          <Money micros={a.usage_cost_micros} />
        </tr>
        <tr>
          <th scope="row" colSpan={2}>Charged from the hold</th>
          <Money micros={a.gross_micros} />
        </tr>
        <tr>
          <th scope="row" colSpan={2}>of which the platform fee</th>
          <Money micros={a.fee_micros} />
        </tr>
        <tr>
          <th scope="row" colSpan={2}>of which the host earns</th>
          <Money micros={a.host_net_micros} />
        </tr>
        {a.reversed_micros !== 0 && (
          <tr>
            <th scope="row" colSpan={2}>Given back (the host lost this attempt)</th>
            <Money micros={-a.reversed_micros} />
          </tr>
        )}
        <tr>
          <th scope="row" colSpan={2}>You pay for this attempt</th>
          <Money micros={a.charged_micros} />
        </tr>
      </tbody>
    </table>
  );
}

/** The receipt: per attempt the usage, rates and charges, then what the hold became. */
export function ReceiptView({ receipt, showHost }: { receipt: Receipt; showHost?: ShowHost }) {
  const t = receipt.totals;
  return (
    <div className="receipt-view" data-testid="receipt">
      {receipt.job_name && (
        <p className="muted">
          Job <strong>{receipt.job_name}</strong> · #{receipt.job_id}
        </p>
      )}
      {receipt.attempts.map((a) => (
        <AttemptTable key={a.attempt} a={a} showHost={showHost} />
      ))}
      <table className="receipt">
        <caption>Totals</caption>
        <tbody>
          <tr>
            <th scope="row">Held from your wallet at submit</th>
            <Money micros={receipt.hold_micros} />
          </tr>
          <tr>
            <th scope="row">Charged</th>
            <Money micros={t.gross_micros} />
          </tr>
          {t.reversed_micros !== 0 && (
            <tr>
              <th scope="row">Given back for lost attempts</th>
              <Money micros={-t.reversed_micros} />
            </tr>
          )}
          <tr>
            <th scope="row">
              <strong>You pay</strong>
            </th>
            <td className="num" data-testid="receipt-charged">
              <strong>
                <Amount micros={t.charged_micros} />
              </strong>
            </td>
          </tr>
          <tr>
            <th scope="row">of which the platform fee</th>
            <Money micros={t.fee_micros} />
          </tr>
          <tr>
            <th scope="row">of which the host earns</th>
            <Money micros={t.host_net_micros} />
          </tr>
          <tr>
            <th scope="row">{receipt.is_settled ? "Returned to your wallet" : "Still held"}</th>
            <Money micros={receipt.is_settled ? receipt.refund_micros : receipt.held_micros} />
          </tr>
        </tbody>
      </table>
    </div>
  );
}
