import { useState } from "react";
import type { BlobHolding } from "../api/blobs";
import { api } from "../api/endpoints";
import { errorMessage } from "../api/errors";
import { formatBytes } from "../lib/files";
import { useLoad } from "../lib/hooks";
import { formatDateTime } from "../lib/money";
import { ErrorBanner } from "./ErrorBanner";
import { Loading } from "./Progress";
import { Sha } from "./Sha";

const ORIGIN_WORDS: Record<string, string> = { upload: "uploaded", output: "a job's output" };

/**
 * The user's stored files (blobs): the quota, and each file with a delete. A file is kept while
 * a job uses it and dropped after BLOB_RETENTION_SECONDS unused, so deleting is for making room.
 */
export function StoragePanel() {
  const [tick, setTick] = useState(0);
  const [pages, setPages] = useState(1);
  const quota = useLoad(() => api.blobQuota(), [tick]);
  const list = useLoad(async () => {
    const results: BlobHolding[] = [];
    let more = false;
    for (let page = 1; page <= pages; page++) {
      const answer = await api.blobs(page);
      results.push(...answer.results);
      more = Boolean(answer.next);
    }
    return { results, more };
  }, [tick, pages]);
  const [rowError, setRowError] = useState<{ sha256: string; message: string } | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);

  const remove = async (blob: BlobHolding) => {
    setRowError(null);
    setDeleting(blob.sha256);
    try {
      await api.blobDelete(blob.sha256);
      setTick((t) => t + 1);
    } catch (err) {
      setRowError({ sha256: blob.sha256, message: errorMessage(err) });
    } finally {
      setDeleting(null);
    }
  };

  return (
    <section aria-labelledby="storage-h" id="storage" data-testid="storage">
      <h2 id="storage-h">Storage</h2>
      {quota.error ? (
        <ErrorBanner error={quota.error} />
      ) : quota.data ? (
        <div data-testid="quota">
          <p>
            {formatBytes(quota.data.used_bytes)} of {formatBytes(quota.data.limit_bytes)} used
            {quota.data.uploading_bytes > 0 && `, ${formatBytes(quota.data.uploading_bytes)} more being uploaded`}.
          </p>
          <progress className="quota-bar" max={Math.max(quota.data.limit_bytes, 1)} value={Math.min(quota.data.used_bytes + quota.data.uploading_bytes, quota.data.limit_bytes)} aria-label="Storage used" />
        </div>
      ) : (
        <Loading />
      )}
      {list.error ? (
        <ErrorBanner error={list.error} />
      ) : !list.data ? (
        <Loading />
      ) : list.data.results.length === 0 ? (
        <p className="muted">No stored files. Inputs you upload on the Run page and your jobs' outputs are kept here.</p>
      ) : (
        <div className="table-wrap">
          <table className="stack" aria-label="Your stored files">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Size</th>
                <th scope="col">sha256</th>
                <th scope="col">From</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span className="visually-hidden">Delete</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.data.results.map((blob) => (
                <tr key={blob.sha256} data-testid="blob-row">
                  <td data-label="Name">{blob.name || <span className="muted">no name</span>}</td>
                  <td data-label="Size">{formatBytes(blob.size)}</td>
                  <td data-label="sha256">
                    <Sha sha256={blob.sha256} of={blob.name || "this file"} />
                  </td>
                  <td data-label="From">{ORIGIN_WORDS[blob.origin] ?? blob.origin}</td>
                  <td data-label="Last used">{blob.last_used_at ? formatDateTime(blob.last_used_at) : "never"}</td>
                  <td>
                    <button type="button" className="danger" disabled={deleting === blob.sha256} onClick={() => void remove(blob)} aria-label={`Delete ${blob.name || blob.sha256}`}>
                      {deleting === blob.sha256 ? "Deleting…" : "Delete"}
                    </button>
                    {rowError?.sha256 === blob.sha256 && (
                      <small className="field-error" role="alert">
                        {rowError.message}
                      </small>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.data?.more && (
        <button type="button" onClick={() => setPages((p) => p + 1)}>
          Show more
        </button>
      )}
    </section>
  );
}
