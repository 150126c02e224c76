// Command k8s-lite runs a real, single-host Kubernetes control plane built
// from k8s.io/kubernetes: kube-apiserver, kube-controller-manager and
// kube-scheduler, plus an embedded etcd (go.etcd.io/etcd/server/v3/embed).
// Each component runs as its own process (a subcommand of this binary);
// `k8s-lite up` generates certificates and supervises all of them.
package main

import (
	"fmt"
	"os"
)

const usage = `k8s-lite: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) in one binary, on 127.0.0.1.

Usage:
  k8s-lite up --dir D [--apiserver-port P] [--etcd-port P]   certs + all components, supervised
  k8s-lite certs --dir D                                     CA, serving/client certs, SA keys, token file, kubeconfigs
  k8s-lite etcd --data-dir D --port P [--peer-port P]        embedded etcd (go.etcd.io/etcd/server/v3/embed)
  k8s-lite apiserver --dir D --etcd URL --port P [-- ARGS]   real kube-apiserver
  k8s-lite controller-manager --dir D [-- ARGS]              real kube-controller-manager
  k8s-lite scheduler --dir D [-- ARGS]                       real kube-scheduler
  k8s-lite kubectl ARGS...                                   real kubectl
  k8s-lite node-kubeconfig --dir D --name N [--out F]        client cert + kubeconfig for node agent N (system:node:N)
  k8s-lite raw apiserver|controller-manager|scheduler ARGS   the upstream command with only ARGS
  k8s-lite version

ARGS after "--" are appended to the generated flags of the upstream command
(later flags win), e.g. k8s-lite apiserver ... -- --v=2.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	sub, args := os.Args[1], os.Args[2:]
	var code int
	switch sub {
	case "up":
		code = cmdUp(args)
	case "certs":
		code = cmdCerts(args)
	case "node-kubeconfig":
		code = cmdNodeKubeconfig(args)
	case "etcd":
		code = cmdEtcd(args)
	case "apiserver":
		code = cmdAPIServer(args)
	case "controller-manager":
		code = cmdControllerManager(args)
	case "scheduler":
		code = cmdScheduler(args)
	case "kubectl":
		code = cmdKubectl(args)
	case "raw":
		code = cmdRaw(args)
	case "version", "--version":
		fmt.Println(versionString())
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "k8s-lite: unknown subcommand %q\n\n%s", sub, usage)
		code = 2
	}
	os.Exit(code)
}
