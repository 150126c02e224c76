#!/usr/bin/env bash
# End-to-end check of k8s-lite: builds (or reuses) the binary, runs
# `k8s-lite up`, and exercises the real control plane with curl and the
# embedded kubectl. Exits non-zero on the first failure; stops the cluster and
# checks no k8s-lite process of this run is left.
#   tools/k8s-lite/hack/smoke.sh [DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
bin="$("$repo/scripts/build-k8s-lite.sh")"
D="${1:-$(mktemp -d /tmp/k8s-lite-smoke.XXXXXX)}"
rm -rf "$D"; mkdir -p "$D"
say() { printf '\n== %s\n' "$*"; }
die() { echo "SMOKE FAIL: $*" >&2; exit 1; }

say "k8s-lite up --dir $D"
start=$(date +%s%N)
setsid "$bin" up --dir "$D" >"$D/up.out" 2>"$D/up.err" &
up_pid=$!
cleanup() {
  kill -TERM "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
}
trap cleanup EXIT
until [ -f "$D/ready" ]; do
  kill -0 "$up_pid" 2>/dev/null || { cat "$D/up.err"; die "up exited"; }
  sleep 0.2
done
echo "ready in $(( ($(date +%s%N) - start) / 1000000 )) ms: $(cat "$D/up.out")"

URL="$(cat "$D/apiserver-url")"; TOKEN="$(cat "$D/admin.token")"
k() { curl -sS --fail-with-body --cacert "$D/ca.crt" -H "Authorization: Bearer $TOKEN" "$@"; }
kc() { KUBECONFIG="$D/kubeconfig" "$bin" kubectl "$@"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

say "namespaces (curl)"
k "$URL/api/v1/namespaces" | jget '" ".join(i["metadata"]["name"] for i in d["items"])'
kc get ns >/dev/null

say "Node + unscheduled Pod; the scheduler binds only once the Node is Ready"
k -X POST -H 'Content-Type: application/json' "$URL/api/v1/nodes" \
  -d '{"apiVersion":"v1","kind":"Node","metadata":{"name":"smoke-node","labels":{"kubernetes.io/hostname":"smoke-node"}}}' >/dev/null
k -X POST -H 'Content-Type: application/json' "$URL/api/v1/namespaces/default/pods" \
  -d '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"smoke-pod"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}' >/dev/null
sleep 2
n="$(k "$URL/api/v1/namespaces/default/pods/smoke-pod" | jget 'd["spec"].get("nodeName")')"
[ "$n" = None ] || die "pod bound to $n before the node was Ready"
echo "before Ready: nodeName unset (node tainted not-ready, no allocatable)"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
k -X PATCH -H 'Content-Type: application/merge-patch+json' "$URL/api/v1/nodes/smoke-node/status" -d '{"status":{
  "capacity":{"cpu":"2","memory":"4Gi","pods":"110"},"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"},
  "addresses":[{"type":"InternalIP","address":"127.0.0.1"}],
  "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"smoke","lastHeartbeatTime":"'"$now"'","lastTransitionTime":"'"$now"'"}]}}' >/dev/null
for i in $(seq 1 60); do
  n="$(k "$URL/api/v1/namespaces/default/pods/smoke-pod" | jget 'd["spec"].get("nodeName")')"
  [ "$n" = smoke-node ] && break
  sleep 0.5
done
[ "$n" = smoke-node ] || die "pod not bound after Ready (nodeName=$n)"
echo "after Ready: pod bound to $n"

say "new namespace gets a default ServiceAccount (kube-controller-manager)"
kc create namespace smoke-ns >/dev/null
for i in $(seq 1 60); do kc -n smoke-ns get serviceaccount default -o name 2>/dev/null && break; sleep 0.5; done
kc -n smoke-ns get serviceaccount default >/dev/null || die "no default ServiceAccount in smoke-ns"
tok="$(kc -n smoke-ns create token default --duration=10m)"
curl -sS --fail-with-body --cacert "$D/ca.crt" -H "Authorization: Bearer $tok" \
  "$URL/apis/authentication.k8s.io/v1/selfsubjectreviews" -X POST -H 'Content-Type: application/json' \
  -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' | jget 'd["status"]["userInfo"]["username"]'

say "server-side dry run"
cat >"$D/deploy.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: smoke-ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
YAML
kc apply --dry-run=server -f "$D/deploy.yaml"
if kc -n smoke-ns get deployment web >/dev/null 2>&1; then die "dry run persisted the Deployment"; fi
code="$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$D/ca.crt" -H "Authorization: Bearer $TOKEN" \
  -X POST -H 'Content-Type: application/json' "$URL/apis/apps/v1/namespaces/smoke-ns/deployments?dryRun=All" \
  -d '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"dry"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}')"
[ "$code" = 201 ] || die "POST ?dryRun=All: HTTP $code"
echo "POST ?dryRun=All: HTTP $code"

say "RSS"
for p in $(pgrep -f "^$bin "); do
  printf '%-20s %4d MB\n' "$(tr '\0' ' ' </proc/"$p"/cmdline | awk '{print $2}')" $(( $(awk '/VmRSS/{print $2}' /proc/"$p"/status) / 1024 ))
done

say "stop"
kill -TERM "$up_pid"; wait "$up_pid" || true
trap - EXIT
sleep 1
if pgrep -af "^$bin " | grep -- "--dir $D\|$D/etcd"; then die "processes left"; fi
[ ! -f "$D/ready" ] || die "$D/ready left behind"
echo "stopped; no process left"
echo "SMOKE OK"
