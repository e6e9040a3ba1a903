import { type FormEvent, useState } from "react";
import { signInUrl } from "../config";
import { navigate } from "../router";
import { session, signIn, signOut } from "../session";

// Development sign-in: POST /dev/token {"name"} answers a customer's token. The service
// offers it only outside production. A real shop replaces this page with its identity
// provider (OIDC, its own accounts...) and calls signIn(token, subject) with what that
// gives: a JWT the service accepts (JWT_SECRET, or JWT_ISSUER/JWT_AUDIENCE).
export function SignInPage() {
  const me = session.use();
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      const res = await fetch(signInUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: name.trim() }),
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok || !body.token) {
        setError(
          res.status === 404
            ? "Development sign-in is off on this service (production)."
            : body.message ?? `Sign-in failed (${res.status}).`,
        );
        return;
      }
      signIn(body.token, body.subject);
      navigate("/");
    } catch {
      setError("We could not reach the shop. Check your connection and try again.");
    } finally {
      setBusy(false);
    }
  }

  return (
    <section>
      <h1>Development sign-in</h1>
      <p className="note">
        Any name signs you in as that customer, for trying the shop out. A real shop
        replaces this page with its identity provider.
      </p>
      {me ? (
        <p>
          Signed in as <strong>{me.subject}</strong>.{" "}
          <button type="button" data-testid="signout" onClick={signOut}>
            Sign out
          </button>
        </p>
      ) : (
        <form onSubmit={submit}>
          <label>
            Name{" "}
            <input
              data-testid="signin-name"
              value={name}
              onChange={(e) => setName(e.target.value)}
              placeholder="alice"
              pattern="[A-Za-z0-9._\-]{1,64}"
              required
              autoFocus
            />
          </label>{" "}
          <button type="submit" data-testid="signin-submit" disabled={busy}>
            Sign in
          </button>
          {error && (
            <p className="error" role="alert" data-testid="signin-error">
              {error}
            </p>
          )}
        </form>
      )}
    </section>
  );
}
