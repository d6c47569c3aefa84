// A small dependency-free SVG chart (line or grouped bars). Accessible: a figure with a text
// summary, keyboard focus that steps through the points with the arrow keys (announced in an
// aria-live region), and an optional data table.
import { useId, useMemo, useState, type KeyboardEvent } from "react";

export interface Point {
  x: number;
  y: number;
  /** What the x value means to a person ("2024-05-01", "00:01:30"). */
  label?: string;
}

export interface Series {
  name: string;
  points: Point[];
  color?: string;
}

interface Props {
  title: string;
  series: Series[];
  kind?: "line" | "bar";
  height?: number;
  yFormat?: (y: number) => string;
  xFormat?: (x: number) => string;
  showTable?: boolean;
  emptyText?: string;
  /** The smallest step between y ticks (1 for integer amounts such as micro-credits). */
  minStep?: number;
}

const COLORS = ["#1f5fbf", "#b34700", "#1a7f37", "#7a3fc7", "#a3195b"];
const WIDTH = 640;
const PAD = { top: 12, right: 16, bottom: 28, left: 72 };

/** 1234.5 -> "1,234.5"; 0.0123 -> "0.012": two significant digits below 1. */
export function numberShort(y: number): string {
  if (y === 0) return "0";
  if (Math.abs(y) < 1) return String(Number(y.toPrecision(2)));
  return (Math.round(y * 10) / 10).toLocaleString("en-US");
}

/** Rough width of an axis label in viewBox units (12px text). */
const CHAR_W = 7.5;

/**
 * Which x labels to draw: counting back from the last point, a label only where it clears the
 * one drawn after it, and never the same text twice in a row (no "25 s25 s").
 */
export function axisLabels(labels: { at: number; label: string }[]): Set<number> {
  const shown = new Set<number>();
  let leftEdge = Infinity;
  let lastText: string | null = null;
  for (let i = labels.length - 1; i >= 0; i--) {
    const { at, label } = labels[i]!;
    const half = (label.length * CHAR_W) / 2;
    if (label === lastText || at + half + 8 > leftEdge) continue;
    shown.add(i);
    leftEdge = at - half;
    lastText = label;
  }
  return shown;
}

function niceTicks(max: number, count = 4, minStep = 0): number[] {
  if (max <= 0) return [0, Math.max(1, minStep)];
  const raw = Math.max(max / count, minStep);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 0.001; v += step) ticks.push(v);
  if (ticks[ticks.length - 1]! < max) ticks.push(ticks[ticks.length - 1]! + step);
  return ticks;
}

export function Chart({
  title,
  series,
  kind = "line",
  height = 220,
  yFormat = numberShort,
  xFormat = (x) => String(x),
  showTable = false,
  emptyText = "No data yet.",
  minStep = 0,
}: Props) {
  const id = useId();
  const [active, setActive] = useState<number | null>(null);
  const xs = useMemo(() => {
    const all = new Map<number, string>();
    for (const s of series) for (const p of s.points) if (!all.has(p.x)) all.set(p.x, p.label ?? xFormat(p.x));
    return [...all.entries()].sort((a, b) => a[0] - b[0]);
  }, [series, xFormat]);

  if (!xs.length) {
    return (
      <figure className="chart" aria-labelledby={`${id}-title`}>
        <figcaption id={`${id}-title`}>{title}</figcaption>
        <p className="muted">{emptyText}</p>
      </figure>
    );
  }

  const yMaxRaw = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.y)));
  const yMinRaw = Math.min(0, ...series.flatMap((s) => s.points.map((p) => p.y)));
  const ticks = niceTicks(yMaxRaw - yMinRaw, 4, minStep).map((t) => t + yMinRaw);
  const yMax = ticks[ticks.length - 1]!;
  const yMin = yMinRaw;
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = height - PAD.top - PAD.bottom;
  const xMin = xs[0]![0];
  const xMax = xs[xs.length - 1]![0];
  const yPos = (y: number) => PAD.top + innerH - ((y - yMin) / (yMax - yMin || 1)) * innerH;
  const slot = innerW / xs.length;
  const xPos = (x: number, index: number) =>
    kind === "bar"
      ? PAD.left + slot * index + slot / 2
      : PAD.left + (xMax === xMin ? innerW / 2 : ((x - xMin) / (xMax - xMin)) * innerW);
  const indexOf = new Map(xs.map(([x], i) => [x, i]));
  const shownLabels = axisLabels(xs.map(([x, label], i) => ({ at: xPos(x, i), label })));

  const onKey = (event: KeyboardEvent<SVGSVGElement>) => {
    const last = xs.length - 1;
    const current = active ?? -1;
    const moves: Record<string, number> = {
      ArrowRight: Math.min(last, current + 1),
      ArrowLeft: Math.max(0, current - 1),
      Home: 0,
      End: last,
    };
    if (event.key in moves) {
      event.preventDefault();
      setActive(moves[event.key]!);
    } else if (event.key === "Escape") {
      setActive(null);
    }
  };

  const activeX = active !== null ? xs[active] : undefined;
  const announcement = activeX
    ? `${activeX[1]}: ${series
        .map((s) => {
          const p = s.points.find((q) => q.x === activeX[0]);
          return `${s.name} ${p ? yFormat(p.y) : "no value"}`;
        })
        .join(", ")}`
    : "";
  const summary = `${title}. ${xs.length} points from ${xs[0]![1]} to ${xs[xs.length - 1]![1]}. ${series
    .map((s) => `${s.name}: highest ${yFormat(Math.max(...s.points.map((p) => p.y), 0))}`)
    .join("; ")}. Focus the chart and use the arrow keys to read each point.`;

  return (
    <figure className="chart" aria-labelledby={`${id}-title`}>
      <figcaption id={`${id}-title`}>{title}</figcaption>
      {series.length > 1 && (
        <ul className="legend" aria-hidden="true">
          {series.map((s, i) => (
            <li key={s.name}>
              <span className="swatch" style={{ background: s.color ?? COLORS[i % COLORS.length] }} />
              {s.name}
            </li>
          ))}
        </ul>
      )}
      <svg
        viewBox={`0 0 ${WIDTH} ${height}`}
        role="img"
        aria-label={summary}
        tabIndex={0}
        onKeyDown={onKey}
        onBlur={() => setActive(null)}
        preserveAspectRatio="xMidYMid meet"
      >
        {ticks.map((t) => (
          <g key={t} className="grid">
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={yPos(t)} y2={yPos(t)} />
            <text x={PAD.left - 6} y={yPos(t)} textAnchor="end" dominantBaseline="middle">
              {yFormat(t)}
            </text>
          </g>
        ))}
        {xs.map(([x, label], i) =>
          shownLabels.has(i) ? (
            <text key={x} className="axis-label" x={xPos(x, i)} y={height - 8} textAnchor="middle">
              {label}
            </text>
          ) : null,
        )}
        {series.map((s, si) => {
          const color = s.color ?? COLORS[si % COLORS.length];
          if (kind === "bar") {
            const barW = (slot * 0.8) / series.length;
            return (
              <g key={s.name} fill={color}>
                {s.points.map((p) => {
                  const i = indexOf.get(p.x) ?? 0;
                  const left = PAD.left + slot * i + slot * 0.1 + barW * si;
                  const top = Math.min(yPos(p.y), yPos(0));
                  return (
                    <rect
                      key={p.x}
                      x={left}
                      y={top}
                      width={Math.max(1, barW - 1)}
                      height={Math.max(1, Math.abs(yPos(0) - yPos(p.y)))}
                      opacity={active === null || active === i ? 1 : 0.45}
                    />
                  );
                })}
              </g>
            );
          }
          const sorted = [...s.points].sort((a, b) => a.x - b.x);
          const path = sorted.map((p) => `${xPos(p.x, indexOf.get(p.x) ?? 0)},${yPos(p.y)}`).join(" ");
          return (
            <g key={s.name}>
              <polyline points={path} fill="none" stroke={color} strokeWidth={2} />
              {sorted.map((p) => {
                const i = indexOf.get(p.x) ?? 0;
                return (
                  <circle
                    key={p.x}
                    cx={xPos(p.x, i)}
                    cy={yPos(p.y)}
                    r={active === i ? 5 : sorted.length > 60 ? 0 : 2.5}
                    fill={color}
                  />
                );
              })}
            </g>
          );
        })}
        {activeX && (
          <line
            className="cursor"
            x1={xPos(activeX[0], active!)}
            x2={xPos(activeX[0], active!)}
            y1={PAD.top}
            y2={PAD.top + innerH}
          />
        )}
      </svg>
      <p className="chart-readout" aria-live="polite">
        {announcement}
      </p>
      {showTable && (
        <details>
          <summary>Data as a table</summary>
          <table>
            <thead>
              <tr>
                <th scope="col">Point</th>
                {series.map((s) => (
                  <th scope="col" key={s.name}>
                    {s.name}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {xs.map(([x, label]) => (
                <tr key={x}>
                  <th scope="row">{label}</th>
                  {series.map((s) => {
                    const p = s.points.find((q) => q.x === x);
                    return <td key={s.name}>{p ? yFormat(p.y) : "—"}</td>;
                  })}
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </figure>
  );
}
