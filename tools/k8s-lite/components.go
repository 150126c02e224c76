package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	_ "time/tzdata" // CronJob time zones, as in cmd/kube-apiserver and cmd/kube-controller-manager

	"github.com/spf13/cobra"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // as cmd/kubectl
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// runUpstream runs one of the real Kubernetes component commands exactly as
// its own main() does (cli.Run), with os.Args rewritten so that the command
// sees itself as the program.
func runUpstream(name string, newCmd func() *cobra.Command, args []string) int {
	os.Args = append([]string{name}, args...)
	c := newCmd()
	c.SetArgs(args)
	return cli.Run(c)
}

func newAPIServer() *cobra.Command         { return apiserverapp.NewAPIServerCommand() }
func newControllerManager() *cobra.Command { return cmapp.NewControllerManagerCommand() }
func newScheduler() *cobra.Command         { return schedulerapp.NewSchedulerCommand() }

// splitPassthrough splits "ours -- theirs".
func splitPassthrough(args []string) (ours, theirs []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return args, nil
}

// apiServerArgs: the flags k8s-lite gives kube-apiserver. Everything is the
// stock apiserver; only what a single loopback host needs is set.
func apiServerArgs(dir, etcd string, port int) []string {
	f := func(n string) string { return filepath.Join(dir, n) }
	return []string{
		"--etcd-servers=" + etcd,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + f("apiserver.crt"),
		"--tls-private-key-file=" + f("apiserver.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--token-auth-file=" + f("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc." + clusterDomain,
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		// The default admission chain (NamespaceLifecycle, LimitRanger,
		// ServiceAccount, TaintNodesByCondition, PodSecurity, Priority,
		// DefaultTolerationSeconds, ResourceQuota, webhooks, ...) plus
		// NodeRestriction for node agents that use system:node:* identities.
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + f("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + f("apiserver-kubelet-client.key"),
		// kubeadm's order: a node agent's Hostname address is its node name,
		// which does not resolve here; its InternalIP (127.0.0.1) does.
		// No --kubelet-certificate-authority: like kubeadm, the apiserver does
		// not verify kubelet serving certificates (procnode's is self-signed).
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		// Alpha in 1.35 (KEP-3288): pods/log?stream=Stdout|Stderr, forwarded
		// to the node agent, so stdout and stderr can be read apart.
		"--feature-gates=PodLogsQuerySplitStreams=true",
		// The endpoints of the "kubernetes" Service would be 127.0.0.1, which
		// Endpoints validation rejects (loopback); nothing in-cluster can
		// reach a loopback apiserver anyway.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
}

func cmdAPIServer(args []string) int {
	ours, extra := splitPassthrough(args)
	fs := flag.NewFlagSet("apiserver", flag.ExitOnError)
	dir := fs.String("dir", "", "k8s-lite directory written by `k8s-lite certs` (required)")
	etcd := fs.String("etcd", "http://127.0.0.1:2379", "etcd client URL(s), comma separated")
	port := fs.Int("port", 6443, "secure port on 127.0.0.1")
	fs.Parse(ours)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "apiserver: --dir is required")
		return 2
	}
	return runUpstream("kube-apiserver", newAPIServer, append(apiServerArgs(*dir, *etcd, *port), extra...))
}

func controllerManagerArgs(dir string) []string {
	f := func(n string) string { return filepath.Join(dir, n) }
	return []string{
		"--kubeconfig=" + f("controller-manager.kubeconfig"),
		"--secure-port=0", // no /healthz listener; `up` supervises the process
		"--leader-elect=false",
		// Each controller gets its own ServiceAccount token (as kubeadm sets
		// it up); needs the tokens controller below.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + f("sa.key"),
		"--root-ca-file=" + f("ca.crt"),
		"--cluster-signing-cert-file=" + f("ca.crt"),
		"--cluster-signing-key-file=" + f("ca.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		// No pod network on this host: no node CIDR allocation, no routes.
		"--allocate-node-cidrs=false",
		"--configure-cloud-routes=false",
		"--profiling=false",
	}
}

func cmdControllerManager(args []string) int {
	ours, extra := splitPassthrough(args)
	fs := flag.NewFlagSet("controller-manager", flag.ExitOnError)
	dir := fs.String("dir", "", "k8s-lite directory (required; needs controller-manager.kubeconfig)")
	fs.Parse(ours)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "controller-manager: --dir is required")
		return 2
	}
	return runUpstream("kube-controller-manager", newControllerManager, append(controllerManagerArgs(*dir), extra...))
}

func schedulerArgs(dir string) []string {
	return []string{
		"--kubeconfig=" + filepath.Join(dir, "scheduler.kubeconfig"),
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
	}
}

func cmdScheduler(args []string) int {
	ours, extra := splitPassthrough(args)
	fs := flag.NewFlagSet("scheduler", flag.ExitOnError)
	dir := fs.String("dir", "", "k8s-lite directory (required; needs scheduler.kubeconfig)")
	fs.Parse(ours)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "scheduler: --dir is required")
		return 2
	}
	return runUpstream("kube-scheduler", newScheduler, append(schedulerArgs(*dir), extra...))
}

func cmdRaw(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "raw: apiserver|controller-manager|scheduler ARGS...")
		return 2
	}
	switch args[0] {
	case "apiserver", "kube-apiserver":
		return runUpstream("kube-apiserver", newAPIServer, args[1:])
	case "controller-manager", "kube-controller-manager":
		return runUpstream("kube-controller-manager", newControllerManager, args[1:])
	case "scheduler", "kube-scheduler":
		return runUpstream("kube-scheduler", newScheduler, args[1:])
	}
	fmt.Fprintf(os.Stderr, "raw: unknown component %q\n", args[0])
	return 2
}

// cmdKubectl is cmd/kubectl's main().
func cmdKubectl(args []string) int {
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
	return 0
}

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "k8s-lite (no build info)"
	}
	var parts []string
	for _, d := range bi.Deps {
		switch d.Path {
		case "k8s.io/kubernetes", "go.etcd.io/etcd/server/v3":
			parts = append(parts, d.Path+" "+d.Version)
		}
	}
	return "k8s-lite " + strings.Join(parts, ", ") + " (" + bi.GoVersion + ")"
}
