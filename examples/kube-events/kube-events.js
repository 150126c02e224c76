// Kubernetes events as chat messages: a watch trigger invokes this function for each pod or
// service event, and it POSTs {"text": "pod default/web-1 ADDED (Running)"} to a chat webhook
// (Slack, Mattermost, Rocket.Chat and Teams incoming webhooks all take that shape).
//
// Where the webhook URL comes from, first match wins:
//   1. the query parameter `url` (handy with `fizz fn test --query url=...`);
//   2. the header `X-Chat-Webhook-Url`;
//   3. the environment variable CHAT_WEBHOOK_URL, the function's `env` (specs/kube-events.yaml
//      sets it from the shell that runs `fizz spec apply`);
//   4. WEBHOOK_URL below: edit it before `fizz fn create` for a cluster.
// Watch invocations carry no query and no custom headers, so in a cluster it is 3 or 4.
// Without a URL the function only answers with the message (a dry run).
const WEBHOOK_URL = "";

module.exports = async (context) => {
  const type = context.headers["x-kubernetes-event-type"];
  const kind = context.headers["x-kubernetes-object-type"];
  const obj = context.body;
  if (!type || !kind || typeof obj !== "object" || obj === null) {
    return { status: 400, body: { error: "expected a Kubernetes watch event" } };
  }
  const text = describe(type, kind, obj);
  const url =
    first(context.query.url) ||
    context.headers["x-chat-webhook-url"] ||
    process.env.CHAT_WEBHOOK_URL ||
    WEBHOOK_URL;
  if (!url) return { status: 200, body: { text, posted: false } };

  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text }),
    signal: AbortSignal.timeout(10_000),
  });
  // A failure answers 500, so the invoker retries the event (with the same call id) and finally
  // dead-letters it, instead of dropping the message silently.
  if (!res.ok) throw new Error(`chat webhook answered ${res.status}`);
  return { status: 200, body: { text, posted: true } };
};

/** "pod default/web-1 ADDED (Running)", "service default/web DELETED (ClusterIP 80/TCP)". */
function describe(type, kind, obj) {
  const m = obj.metadata || {};
  const where = m.namespace ? `${m.namespace}/${m.name}` : m.name;
  const detail = kind === "Pod" ? podDetail(obj) : kind === "Service" ? serviceDetail(obj) : "";
  return `${kind.toLowerCase()} ${where} ${type}${detail ? ` (${detail})` : ""}`;
}

function podDetail(pod) {
  const status = pod.status || {};
  // A waiting container's reason (CrashLoopBackOff, ImagePullBackOff) says more than "Pending".
  const waiting = (status.containerStatuses || [])
    .map((c) => c.state && c.state.waiting && c.state.waiting.reason)
    .find(Boolean);
  return waiting || status.phase || "";
}

function serviceDetail(svc) {
  const spec = svc.spec || {};
  const ports = (spec.ports || []).map((p) => `${p.port}/${p.protocol || "TCP"}`).join(",");
  return [spec.type || "ClusterIP", ports].filter(Boolean).join(" ");
}

function first(v) {
  return Array.isArray(v) ? v[0] : v;
}
