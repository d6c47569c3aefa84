// The Run page's "Run in": the public marketplace or one of the user's organisations' pools.
// An organisation whose pool settings say `pool_required` takes its members' jobs only in its
// pool: it is preselected, and the public marketplace is not offered.

import { useEffect, useState } from "react";
import { api } from "../api/endpoints";
import { pools } from "../api/pools";

export interface PoolChoice {
  id: number;
  name: string;
  /** The organisation requires its members' jobs to run in its pool. */
  required: boolean;
  /** Members run free on the pool's machines. */
  membersFree: boolean;
}

export interface PoolChoices {
  choices: PoolChoice[];
  loading: boolean;
  /** The organisations that require their pool (the public marketplace is closed to the user). */
  requiring: PoolChoice[];
}

/** The user's organisations and whether each requires its pool. An organisation whose settings
 * can't be read counts as not requiring it (the server's refusal, `pool_required`, still says so). */
export function usePoolChoices(): PoolChoices {
  const [state, setState] = useState<PoolChoices>({ choices: [], loading: true, requiring: [] });
  useEffect(() => {
    let live = true;
    void (async () => {
      let choices: PoolChoice[] = [];
      try {
        const orgs = await api.organisations();
        choices = await Promise.all(
          orgs.results.map(async (org) => {
            try {
              const settings = await pools.settings(org.id);
              return { id: org.id, name: org.name, required: settings.pool_required === true, membersFree: settings.pool_members_free === true };
            } catch {
              return { id: org.id, name: org.name, required: false, membersFree: false };
            }
          }),
        );
      } catch {
        choices = [];
      }
      if (live) setState({ choices, loading: false, requiring: choices.filter((c) => c.required) });
    })();
    return () => {
      live = false;
    };
  }, []);
  return state;
}

/** The pool to preselect: the one in the URL if it is the user's, else the first that is required. */
export function initialPool(choices: PoolChoices, fromUrl: string | null, current: string): string {
  if (current && choices.choices.some((c) => String(c.id) === current)) return current;
  if (fromUrl && choices.choices.some((c) => String(c.id) === fromUrl)) return fromUrl;
  return choices.requiring[0] ? String(choices.requiring[0].id) : "";
}
