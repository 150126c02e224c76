// Fizz runtime for Go functions (docs/runtime-contract.md). Standard library only, and every
// identifier starts with "fizz": these files are compiled into the user's own package main by
// runtimes/go/build.sh, next to the user's handlers, so nothing here may clash with user code.
//
// One program, two modes:
//   - warm (built with -tags fizzwarm, no user code): serves the contract until a specialize, then
//     extracts the package and execs the function's binary, handing it the listening socket and the
//     specialize connection (fizz_warm_handoff.go);
//   - function (the user's binary): answers that specialize itself and serves the function on the
//     same socket (fizz_function.go).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kubernetes' default terminationGracePeriodSeconds is 30: finish well inside it.
const fizzShutdownGrace = 25 * time.Second

const (
	fizzStateWarm int32 = iota
	fizzStateSpecializing
	fizzStateSpecialized
	fizzStateFailed
)

// fizzRuntime is the instance: its configuration from the environment and its state.
type fizzRuntime struct {
	host, port    string
	instanceID    string
	tokenHash     []byte // sha256 of FIZZ_SPECIALIZE_TOKEN; nil when none was given
	workdir       string
	secretsDir    string
	configsDir    string
	maxBody       int64
	maxPkgBytes   int64
	maxPkgEntries int64

	state    atomic.Int32
	draining atomic.Bool
	server   *http.Server
	listener net.Listener

	// Set before state becomes specialized, read-only afterwards.
	handler      http.HandlerFunc
	function     fizzFunctionRef
	concurrency  int
	gate         *fizzGate
	shutdownOnce sync.Once
	done         chan struct{}
}

type fizzFunctionRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Revision  int64  `json:"revision"`
}

func fizzEnvInt(name string, def int64) int64 {
	raw := os.Getenv(name)
	if raw == "" {
		return def
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		fizzLog("%s=%s is not a valid non-negative integer", name, raw)
		os.Exit(2)
	}
	return n
}

func fizzNewRuntime() *fizzRuntime {
	rt := &fizzRuntime{
		host:          os.Getenv("HOST"),
		port:          os.Getenv("PORT"),
		instanceID:    os.Getenv("FIZZ_INSTANCE_ID"),
		workdir:       fizzAbs(os.Getenv("FIZZ_WORKDIR")),
		secretsDir:    fizzAbs(os.Getenv("FIZZ_SECRETS_DIR")),
		configsDir:    fizzAbs(os.Getenv("FIZZ_CONFIGS_DIR")),
		maxBody:       fizzEnvInt("FIZZ_MAX_BODY_BYTES", 64*1024*1024),
		maxPkgBytes:   fizzEnvInt("FIZZ_MAX_PACKAGE_BYTES", 2*1024*1024*1024),
		maxPkgEntries: fizzEnvInt("FIZZ_MAX_PACKAGE_ENTRIES", 100000),
		done:          make(chan struct{}),
	}
	if rt.host == "" {
		rt.host = "0.0.0.0"
	}
	if rt.port == "" {
		rt.port = "8888"
	}
	// Read once and dropped: the function (and anything it starts) never sees it in os.Environ.
	if token, ok := os.LookupEnv("FIZZ_SPECIALIZE_TOKEN"); ok {
		os.Unsetenv("FIZZ_SPECIALIZE_TOKEN")
		if token != "" {
			sum := sha256.Sum256([]byte(token))
			rt.tokenHash = sum[:]
		}
	}
	return rt
}

// authorized compares the given token with the instance's, in constant time (through their
// hashes, so the lengths leak nothing either).
func (rt *fizzRuntime) authorized(given []string) bool {
	if rt.tokenHash == nil {
		return true
	}
	if len(given) != 1 {
		return false
	}
	sum := sha256.Sum256([]byte(given[0]))
	return subtle.ConstantTimeCompare(sum[:], rt.tokenHash) == 1
}

func (rt *fizzRuntime) publicState() string {
	switch rt.state.Load() {
	case fizzStateSpecialized:
		return "specialized"
	case fizzStateFailed:
		return "failed"
	}
	return "warm"
}

func (rt *fizzRuntime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt.draining.Load() {
		w.Header().Set("Connection", "close")
	}
	target, targeted := r.Header["X-Fizz-Instance"]
	if !targeted {
		switch r.URL.Path {
		case "/healthz", "/readyz":
			rt.probe(w, r)
			return
		case "/v2/specialize":
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", "POST")
				fizzError(w, 405, "METHOD_NOT_ALLOWED", "use POST", false)
				return
			}
			rt.specialize(w, r)
			return
		}
	}
	first := ""
	if len(target) > 0 {
		first = target[0]
	}
	rt.invoke(w, r, targeted, first)
}

func (rt *fizzRuntime) probe(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fizzError(w, 405, "METHOD_NOT_ALLOWED", "use GET, HEAD", false)
		return
	}
	state := rt.publicState()
	if r.URL.Path == "/healthz" {
		fizzJSON(w, 200, map[string]any{"status": "ok", "state": state})
		return
	}
	if rt.state.Load() == fizzStateSpecialized && !rt.draining.Load() {
		fizzJSON(w, 200, map[string]any{"status": "ready", "state": state})
		return
	}
	fizzJSON(w, 503, map[string]any{"status": "not-ready", "state": state})
}

// refusal is the 409 for a specialize once the instance is no longer warm, answered before (or
// instead of) reading the rest of the body.
func (rt *fizzRuntime) refusal(w http.ResponseWriter, r *http.Request) bool {
	message := "this instance is already specialized; an instance is specialized once"
	switch rt.state.Load() {
	case fizzStateWarm:
		return false
	case fizzStateFailed:
		message = "this instance failed to load its function; an instance is specialized once"
	}
	rt.answerUnread(w, r, 409, fizzErrorBody("ALREADY_SPECIALIZED", message, false, ""))
	return true
}

func (rt *fizzRuntime) newServer() *http.Server {
	return &http.Server{
		Handler:           rt,
		ReadHeaderTimeout: 30 * time.Second,
		// Longer than any sane client idle timeout, so the gateway's pooled connection is never
		// closed here just as it sends a request on it.
		IdleTimeout: 65 * time.Second,
		ErrorLog:    nil,
	}
}

// serve runs the HTTP server on ln until a drain; then it finishes the calls in flight and exits.
func (rt *fizzRuntime) serve(ln net.Listener) {
	rt.listener = ln
	rt.server = rt.newServer()
	rt.watchShutdown()
	err := rt.server.Serve(ln)
	if err != nil && err != http.ErrServerClosed {
		fizzLog("serve: %v", err)
		os.Exit(1)
	}
	<-rt.done
}

func (rt *fizzRuntime) watchShutdown() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		go rt.drain(sig.String())
		<-signals
		fizzLog("%s again: exiting without waiting", sig)
		os.Exit(1)
	}()
	if os.Getenv("FIZZ_PARENT_STDIN") == "1" {
		// The process backend's parent holds our stdin pipe: EOF means it is gone, and an instance
		// must not outlive the poolkeeper that tracks it.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			rt.drain("parent closed stdin")
		}()
	}
}

// drain stops accepting, finishes the calls in flight, and exits 0 (1 if they outlast the grace).
func (rt *fizzRuntime) drain(reason string) {
	rt.shutdownOnce.Do(func() {
		rt.draining.Store(true)
		fizzLog("%s: no new connections; finishing in-flight calls", reason)
		ctx, cancel := context.WithTimeout(context.Background(), fizzShutdownGrace)
		defer cancel()
		err := rt.server.Shutdown(ctx)
		code := 0
		if err != nil {
			fizzLog("calls still running after %s; exiting", fizzShutdownGrace)
			code = 1
		}
		os.Stdout.Sync()
		os.Exit(code)
	})
}

func fizzAbs(p string) string {
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func main() {
	fizzStart()
}
