import { Link } from "react-router";
import { useAuth } from "../auth";
import { api } from "../api/endpoints";
import { useLoad } from "../lib/hooks";
import { formatCredits } from "../lib/money";

function WalletSummary() {
  const wallet = useLoad(() => api.wallet(), []);
  if (!wallet.data) return null;
  return (
    <p>
      Available: <strong>{formatCredits(wallet.data.available_micros)}</strong> ·{" "}
      <Link to="/wallet">Wallet</Link>
    </p>
  );
}

export function HomePage() {
  const { user } = useAuth();
  return (
    <section>
      <h1>Idle compute, rented by the second</h1>
      <p>
        Run a Python script with its requirements on someone else's idle machine, in a locked-down
        container, and pay only for the seconds it uses. Or rent out your own machine and earn credits.
      </p>
      {user ? (
        <>
          <WalletSummary />
          <ul className="cards">
            <li><Link to="/run">Run a job</Link></li>
            <li><Link to="/catalog">Browse machines</Link></li>
            <li><Link to="/jobs">Your jobs</Link></li>
            <li><Link to="/hosting">Rent out a machine</Link></li>
          </ul>
        </>
      ) : (
        <p>
          <Link to="/signup" className="button primary">Sign up</Link> or <Link to="/login">log in</Link>.
        </p>
      )}
    </section>
  );
}
