import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import { useAuth } from "../auth";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field } from "../components/Field";
import { useFormErrors } from "../lib/forms";

function safeNext(next: string | null): string {
  // Only same-site paths: "//evil.example" or "https://…" would leave the site.
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export function LoginPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const { setUser } = useAuth();
  const errors = useFormErrors(["username", "password"]);
  const [busy, setBusy] = useState(false);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    setBusy(true);
    try {
      const session = await api.login({ username, password });
      setUser(session.user);
      navigate(safeNext(params.get("next")), { replace: true });
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="narrow">
      <h1>Log in</h1>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Field label="Username" error={errors.fieldError("username")}>
          <input name="username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} />
        </Field>
        <Field label="Password" error={errors.fieldError("password")}>
          <input name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        </Field>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
      <p>
        New here? <Link to="/signup">Create an account</Link>
      </p>
    </section>
  );
}

export function SignupPage() {
  const navigate = useNavigate();
  const { setUser } = useAuth();
  const errors = useFormErrors(["username", "email", "password"]);
  const [busy, setBusy] = useState(false);
  const [form, setForm] = useState({ username: "", email: "", password: "" });

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    errors.clear();
    setBusy(true);
    try {
      // Sign-up starts the browser session and returns the user.
      const session = await api.signup(form);
      setUser(session.user);
      navigate("/wallet", { replace: true });
    } catch (err) {
      errors.set(err);
    } finally {
      setBusy(false);
    }
  };

  const set = (key: keyof typeof form) => (e: React.ChangeEvent<HTMLInputElement>) =>
    setForm((f) => ({ ...f, [key]: e.target.value }));

  return (
    <section className="narrow">
      <h1>Create an account</h1>
      <ErrorBanner message={errors.banner} details={errors.otherFields} />
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Field label="Username" error={errors.fieldError("username")}>
          <input name="username" autoComplete="username" required value={form.username} onChange={set("username")} />
        </Field>
        <Field label="Email" error={errors.fieldError("email")}>
          <input name="email" type="email" autoComplete="email" required value={form.email} onChange={set("email")} />
        </Field>
        <Field label="Password" error={errors.fieldError("password")} hint="At least 8 characters, not only digits, not a common password.">
          <input name="password" type="password" autoComplete="new-password" required value={form.password} onChange={set("password")} />
        </Field>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Creating…" : "Sign up"}
        </button>
      </form>
      <p>
        Have an account? <Link to="/login">Log in</Link>
      </p>
    </section>
  );
}
