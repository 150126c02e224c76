import { json, SignInNeeded, token, whenSignedOut } from "./api";
import { clear, errorBox, h } from "./dom";
import { functionPage } from "./pages/function";
import { functionsPage, poolsPage } from "./pages/lists";

/** Hash routes: `#/` functions, `#/fn/<ns>/<name>`, `#/pools`. The page is static; data is fetched. */
const app = document.getElementById("app")!;
const signOut = document.getElementById("signout") as HTMLButtonElement;
let stopCurrent: (() => void) | undefined;
let generation = 0;

/** A hand-typed or truncated link (`#/fn/%E0`) shows the functions list instead of throwing. */
function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return "";
  }
}

function signInForm(): HTMLElement {
  const input = h("input", {
    type: "password",
    // No name: a submission the script did not catch (form-action 'none' blocks it anyway) could
    // never carry the token into a URL.
    id: "token",
    autocomplete: "off",
    required: true,
    placeholder: "the content of .fizz/admin-token",
  });
  const message = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { id: "signin" },
    h("h1", {}, "Sign in"),
    h(
      "p",
      {},
      "The registry's admin token (npm start writes it to .fizz/admin-token). It is kept for this tab only.",
    ),
    h("label", {}, "Token ", input),
    h("button", { type: "submit" }, "Sign in"),
    message,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    token.set(input.value.trim());
    void (async () => {
      try {
        await json("GET", "/v1/pools");
        if (location.hash === "" || location.hash === "#/signin") location.hash = "#/";
        void render();
      } catch (err) {
        // A wrong token answers 401, which already cleared it and re-rendered this form.
        if (!(err instanceof SignInNeeded)) message.textContent = (err as Error).message;
      }
    })();
  });
  return form;
}

function showSignIn(): void {
  stopCurrent?.();
  stopCurrent = undefined;
  generation++;
  signOut.hidden = true;
  clear(app);
  app.appendChild(signInForm());
  (document.getElementById("token") as HTMLInputElement | null)?.focus();
}

async function render(): Promise<void> {
  stopCurrent?.();
  stopCurrent = undefined;
  const mine = ++generation;
  if (token.get() === null) return showSignIn();
  signOut.hidden = false;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodePart);
  clear(app);
  app.appendChild(h("p", { class: "muted" }, "loading…"));
  try {
    let el: HTMLElement;
    let stop: (() => void) | undefined;
    if (parts[0] === "fn" && parts[1] && parts[2]) {
      ({ el, stop } = await functionPage(parts[1], parts[2]));
    } else if (parts[0] === "pools") {
      el = await poolsPage();
    } else {
      el = await functionsPage();
    }
    // A newer navigation won meanwhile: drop this page.
    if (mine !== generation) return void stop?.();
    stopCurrent = stop;
    clear(app);
    app.appendChild(el);
    document.title = `Fizz console: ${parts[0] === "fn" ? (parts[2] ?? "") : parts[0] === "pools" ? "pools" : "functions"}`;
  } catch (err) {
    if (err instanceof SignInNeeded || mine !== generation) return;
    clear(app);
    app.appendChild(errorBox(err));
  }
}

whenSignedOut(showSignIn);
signOut.addEventListener("click", () => {
  token.clear();
  showSignIn();
});
window.addEventListener("hashchange", () => void render());
void render();
