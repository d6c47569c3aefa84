import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { Navigate, useLocation } from "react-router";
import { api } from "./api/endpoints";
import { pageConfig } from "./config";
import { isUnauthenticated } from "./api/errors";
import type { User } from "./api/types";
import { Loading } from "./components/Progress";
import { ErrorBanner } from "./components/ErrorBanner";

interface AuthState {
  user: User | null;
  loading: boolean;
  error: unknown;
  refresh: () => Promise<User | null>;
  setUser: (user: User | null) => void;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  // The page served by Django says who is logged in; only without it (vite dev) ask the API.
  const embedded = pageConfig().user;
  const [user, setUser] = useState<User | null>(embedded ?? null);
  const [loading, setLoading] = useState(embedded === undefined);
  const [error, setError] = useState<unknown>(null);

  const refresh = useCallback(async () => {
    try {
      const me = await api.me();
      setUser(me);
      setError(null);
      return me;
    } catch (err) {
      setUser(null);
      if (!isUnauthenticated(err)) setError(err);
      return null;
    } finally {
      setLoading(false);
    }
  }, []);

  const logout = useCallback(async () => {
    try {
      await api.logout();
    } finally {
      setUser(null);
    }
  }, []);

  useEffect(() => {
    if (embedded === undefined) void refresh();
  }, [refresh, embedded]);

  return (
    <AuthContext.Provider value={{ user, loading, error, refresh, setUser, logout }}>
      {children}
    </AuthContext.Provider>
  );
}

export function useAuth(): AuthState {
  const state = useContext(AuthContext);
  if (!state) throw new Error("useAuth outside AuthProvider");
  return state;
}

/** Pages that need a session: send anonymous visitors to /login and back afterwards. */
export function RequireAuth({ children, staff = false }: { children: ReactNode; staff?: boolean }) {
  const { user, loading, error } = useAuth();
  const location = useLocation();
  if (loading) return <Loading />;
  if (!user) {
    if (error) return <ErrorBanner error={error} />;
    const next = encodeURIComponent(location.pathname + location.search);
    return <Navigate to={`/login?next=${next}`} replace />;
  }
  if (staff && !user.is_staff) {
    return <ErrorBanner message="This page is for staff only." />;
  }
  return <>{children}</>;
}
