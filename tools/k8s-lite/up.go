package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cmdUp: certs, then etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler as child processes (this binary re-executed with each
// subcommand), wait until the cluster is usable, write DIR/kubeconfig and
// DIR/ready, print the apiserver URL, and stop every child on SIGTERM/SIGINT.
func cmdUp(args []string) int {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory: certs, kubeconfigs, etcd data, logs (required)")
	apiPort := fs.Int("apiserver-port", 0, "apiserver secure port on 127.0.0.1 (0: pick a free one)")
	etcdPort := fs.Int("etcd-port", 0, "etcd client port (0: pick a free one)")
	etcdPeerPort := fs.Int("etcd-peer-port", 0, "etcd peer port (0: pick a free one)")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the cluster to become ready")
	noFsync := fs.Bool("unsafe-no-fsync", false, "etcd without fsync (throwaway test clusters)")
	verbosity := fs.Int("v", 0, "klog verbosity of the Kubernetes components")
	fs.Parse(args)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "up: --dir is required")
		return 2
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "up:", err)
		return 1
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "k8s-lite up: "+format+"\n", a...)
	}
	os.Remove(filepath.Join(d, "ready"))

	if err := ensureCerts(d); err != nil {
		logf("certs: %v", err)
		return 1
	}
	for _, p := range []*int{apiPort, etcdPort, etcdPeerPort} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				logf("%v", err)
				return 1
			}
		}
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *apiPort)
	if err := writeKubeconfigs(d, server); err != nil {
		logf("kubeconfigs: %v", err)
		return 1
	}
	logDir := filepath.Join(d, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		logf("%v", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		logf("%v", err)
		return 1
	}

	sup := &supervisor{logDir: logDir, self: self, exited: make(chan *child, 8)}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	fail := func(format string, a ...any) int {
		logf(format, a...)
		logf("logs are in %s", logDir)
		sup.stopAll(logf)
		return 1
	}
	// wait runs check until it succeeds, the deadline passes, a child dies or
	// a signal arrives.
	wait := func(what string, check func() error) (int, bool) {
		var last error
		for {
			if last = check(); last == nil {
				return 0, true
			}
			select {
			case c := <-sup.exited:
				return fail("%s exited while waiting for %s: %v (see %s)", c.name, what, c.err, c.logPath), false
			case s := <-sigs:
				logf("%v while waiting for %s", s, what)
				sup.stopAll(logf)
				return 1, false
			case <-ctx.Done():
				return fail("timed out waiting for %s: %v", what, last), false
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	vflag := "--v=" + strconv.Itoa(*verbosity)

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", *etcdPort)
	etcdArgs := []string{"etcd", "--data-dir", filepath.Join(d, "etcd"),
		"--port", strconv.Itoa(*etcdPort), "--peer-port", strconv.Itoa(*etcdPeerPort)}
	if *noFsync {
		etcdArgs = append(etcdArgs, "--unsafe-no-fsync")
	}
	if err := sup.start("etcd", etcdArgs...); err != nil {
		return fail("start etcd: %v", err)
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if code, ok := wait("etcd /health", func() error { return httpOK(plain, etcdURL+"/health", "", `"health":"true"`) }); !ok {
		return code
	}
	logf("etcd ready at %s", etcdURL)

	if err := sup.start("kube-apiserver", "apiserver", "--dir", d, "--etcd", etcdURL,
		"--port", strconv.Itoa(*apiPort), "--", vflag); err != nil {
		return fail("start kube-apiserver: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(d, "ca.crt"))
	if err != nil {
		return fail("%v", err)
	}
	tokB, err := os.ReadFile(filepath.Join(d, "admin.token"))
	if err != nil {
		return fail("%v", err)
	}
	token := strings.TrimSpace(string(tokB))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, ok := wait("kube-apiserver /readyz", func() error { return httpOK(api, server+"/readyz", token, "ok") }); !ok {
		return code
	}
	logf("kube-apiserver ready at %s", server)

	if err := sup.start("kube-controller-manager", "controller-manager", "--dir", d, "--", vflag); err != nil {
		return fail("start kube-controller-manager: %v", err)
	}
	if err := sup.start("kube-scheduler", "scheduler", "--dir", d, "--", vflag); err != nil {
		return fail("start kube-scheduler: %v", err)
	}
	if code, ok := wait("namespace default", func() error {
		return httpOK(api, server+"/api/v1/namespaces/default", token, "")
	}); !ok {
		return code
	}
	// Created by the serviceaccount controller in kube-controller-manager:
	// proves the controller-manager is up and talking to the apiserver.
	if code, ok := wait("serviceaccount default/default", func() error {
		return httpOK(api, server+"/api/v1/namespaces/default/serviceaccounts/default", token, "")
	}); !ok {
		return code
	}
	// kube-scheduler has no listener (--secure-port=0) and no leader Lease;
	// it is watched as a process like the others (its exit stops `up`).
	if err := writeFileAtomic(filepath.Join(d, "ready"), []byte(server+"\n"), 0o644); err != nil {
		return fail("%v", err)
	}
	logf("cluster ready; kubeconfig %s", filepath.Join(d, "kubeconfig"))
	fmt.Println(server)

	select {
	case c := <-sup.exited:
		os.Remove(filepath.Join(d, "ready"))
		return fail("%s exited: %v (see %s)", c.name, c.err, c.logPath)
	case s := <-sigs:
		logf("%v: stopping", s)
		os.Remove(filepath.Join(d, "ready"))
		sup.stopAll(logf)
		return 0
	}
}

type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

type supervisor struct {
	logDir   string
	self     string
	children []*child
	exited   chan *child
	stopping bool
}

func (s *supervisor) start(name string, args ...string) error {
	logPath := filepath.Join(s.logDir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "\n==== %s k8s-lite %s\n", time.Now().Format(time.RFC3339), strings.Join(args, " "))
	cmd := exec.Command(s.self, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = os.Environ()
	// Own process group (a terminal's Ctrl-C reaches only `up`, which stops
	// the children in order); SIGTERM to the child if `up` dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	s.children = append(s.children, c)
	fmt.Fprintf(os.Stderr, "k8s-lite up: started %s (pid %d), log %s\n", name, cmd.Process.Pid, logPath)
	go func() {
		c.err = cmd.Wait()
		if c.err == nil {
			c.err = errors.New("exit status 0")
		}
		lf.Close()
		close(c.done)
		select {
		case s.exited <- c:
		default:
		}
	}()
	return nil
}

// stopAll stops the children in reverse start order: SIGTERM, then SIGKILL
// after a grace period.
func (s *supervisor) stopAll(logf func(string, ...any)) {
	for i := len(s.children) - 1; i >= 0; i-- {
		c := s.children[i]
		select {
		case <-c.done:
			continue
		default:
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			logf("stopped %s", c.name)
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
			logf("killed %s (no exit 20s after SIGTERM)", c.name)
		}
	}
}

func httpOK(c *http.Client, url, token, want string) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if want != "" && !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: body %q lacks %q", url, string(body), want)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
