import { CopyButton } from "./CopyButton";

/** A sha256 shortened to its first 12 digits (the whole one in the tooltip), with a copy button. */
export function Sha({ sha256, of }: { sha256: string; of: string }) {
  if (!sha256) return <span className="muted">—</span>;
  return (
    <>
      <span className="sha" title={sha256} data-sha256={sha256}>
        {sha256.slice(0, 12)}…
      </span>{" "}
      <CopyButton text={sha256} ariaLabel={`Copy the sha256 of ${of}`} />
    </>
  );
}
