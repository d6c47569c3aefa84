import { lazy, Suspense, useEffect, useRef } from "react";
import { Link, NavLink, Route, Routes, useLocation, useNavigate } from "react-router";
import { RequireAuth, useAuth } from "./auth";
import { LoginPage, SignupPage } from "./pages/Auth";
import { HomePage } from "./pages/Home";
import { CatalogPage } from "./pages/Catalog";
import { HostPage } from "./pages/HostDetail";
import { JobsPage } from "./pages/Jobs";
import { JobPage } from "./pages/Job";
import { GroupPage } from "./pages/Group";
import { GroupsPage } from "./pages/Groups";
import { WalletPage } from "./pages/Wallet";
import { HostingPage } from "./pages/Hosting";
import { ReportsPage } from "./pages/Reports";
import { OrganisationsPage } from "./pages/Organisations";
import { OrganisationPage } from "./pages/Organisation";
import { Loading } from "./components/Progress";

// The code editor (CodeMirror) is most of the bundle: load it with the Run page only.
const RunPage = lazy(() => import("./pages/Run").then((m) => ({ default: m.RunPage })));

function Header() {
  const { user, logout } = useAuth();
  const navigate = useNavigate();
  return (
    <header className="site-header">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Link to="/" className="brand">
        CommuniPute
      </Link>
      <nav aria-label="Main">
        <ul>
          <li><NavLink to="/catalog">Catalog</NavLink></li>
          {user && <li><NavLink to="/run">Run</NavLink></li>}
          {user && <li><NavLink to="/jobs">Jobs</NavLink></li>}
          {user && <li><NavLink to="/groups">Groups</NavLink></li>}
          {user && <li><NavLink to="/wallet">Wallet</NavLink></li>}
          {user && <li><NavLink to="/hosting">Hosting</NavLink></li>}
          {user && <li><NavLink to="/organisations">Organisations</NavLink></li>}
          {user?.is_staff && <li><NavLink to="/reports">Reports</NavLink></li>}
        </ul>
      </nav>
      <div className="account">
        {user ? (
          <>
            <span className="muted" data-testid="whoami">{user.username}</span>
            <button
              type="button"
              className="link-button"
              onClick={() => void logout().then(() => navigate("/login"))}
            >
              Log out
            </button>
          </>
        ) : (
          <>
            <NavLink to="/login">Log in</NavLink>
            <NavLink to="/signup">Sign up</NavLink>
          </>
        )}
      </div>
    </header>
  );
}

/** Move focus to the page heading after navigation so screen readers hear the new page. */
function useFocusOnNavigate() {
  const location = useLocation();
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const heading = document.querySelector<HTMLElement>("main h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }, [location.pathname]);
}

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <Link to="/">Go to the start page</Link>
      </p>
    </section>
  );
}

export function App() {
  useFocusOnNavigate();
  return (
    <>
      <Header />
      <main id="main">
        <Routes>
          <Route path="/" element={<HomePage />} />
          <Route path="/login" element={<LoginPage />} />
          <Route path="/signup" element={<SignupPage />} />
          <Route path="/catalog" element={<RequireAuth><CatalogPage /></RequireAuth>} />
          <Route path="/hosts/:id" element={<RequireAuth><HostPage /></RequireAuth>} />
          <Route path="/run" element={<RequireAuth><Suspense fallback={<Loading />}><RunPage /></Suspense></RequireAuth>} />
          <Route path="/jobs" element={<RequireAuth><JobsPage /></RequireAuth>} />
          <Route path="/jobs/:id" element={<RequireAuth><JobPage /></RequireAuth>} />
          <Route path="/groups" element={<RequireAuth><GroupsPage /></RequireAuth>} />
          <Route path="/groups/:id" element={<RequireAuth><GroupPage /></RequireAuth>} />
          <Route path="/wallet" element={<RequireAuth><WalletPage /></RequireAuth>} />
          <Route path="/hosting" element={<RequireAuth><HostingPage /></RequireAuth>} />
          <Route path="/organisations" element={<RequireAuth><OrganisationsPage /></RequireAuth>} />
          <Route path="/organisations/:id" element={<RequireAuth><OrganisationPage /></RequireAuth>} />
          <Route path="/reports" element={<RequireAuth staff><ReportsPage /></RequireAuth>} />
          <Route path="*" element={<NotFound />} />
        </Routes>
      </main>
    </>
  );
}
