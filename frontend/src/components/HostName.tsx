import { Link } from "react-router";
import { api } from "../api/endpoints";
import { useLoad } from "../lib/hooks";

/** A host by its name, linked to its page; "host #3" until (or unless) the catalog answers. */
export function HostName({ id, link = true }: { id: number; link?: boolean }) {
  const host = useLoad(() => api.host(id), [id]);
  const name = host.data?.name ? host.data.name : `host #${id}`;
  return link ? <Link to={`/hosts/${id}`}>{name}</Link> : <>{name}</>;
}
