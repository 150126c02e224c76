//go:build fizzwarm

// The warm instance's last act: with the package extracted and its digest checked, it checks the
// build output, writes secrets and configmaps, and execs the function's binary with the function's
// environment, handing it the listening socket and the specialize connection (which the function
// answers itself). No proxy hop, no second process: the instance keeps its pid, port and uid.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// What build.sh writes next to the binary: the handlers it found, for an entrypoint check
// before the exec.
// How long the watchdog serves a failed instance at most (see fizzWatchdog).
const fizzFailedLifetime = 2 * time.Minute

const (
	fizzBinaryName  = "fizz-function"
	fizzEntriesName = "fizz-function.entries"
)

type fizzEntryList struct {
	Module      string            `json:"module"`
	Initializes bool              `json:"initializes"`
	Handlers    map[string]string `json:"handlers"` // name -> file:line
	Funcs       map[string]string `json:"funcs"`    // every other top-level func -> file:line
}

// fizzHandoff is what the function's process needs from the warm one, in FIZZ_GO_HANDOFF (read
// and removed before the function is called).
type fizzHandoff struct {
	ListenFD    int             `json:"listenFd"`
	ConnFD      int             `json:"connFd"`
	StartNs     int64           `json:"startNs"`
	Entrypoint  string          `json:"entrypoint"`
	Function    fizzFunctionRef `json:"function"`
	Concurrency int             `json:"concurrency"`
	TokenHash   string          `json:"tokenHash,omitempty"`
	WatchFD     int             `json:"watchFd,omitempty"`
	WatchPID    int             `json:"watchPid,omitempty"`
}

// fizzResolveEntry picks the handler the entrypoint names ("Fn" or "file.Fn"; default Handler),
// or says why none fits, naming the file and line where it can.
// It also returns the list (zero without one).
func fizzResolveEntry(fn, entrypoint string) (string, string, fizzEntryList) {
	name, file := entrypoint, ""
	if name == "" {
		name = "Handler"
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		file, name = name[:i], name[i+1:]
	}
	raw, err := os.ReadFile(filepath.Join(fn, fizzEntriesName))
	if err != nil {
		// No list: the function's process checks the entrypoint itself.
		return name, "", fizzEntryList{Initializes: true}
	}
	var list fizzEntryList
	if json.Unmarshal(raw, &list) != nil {
		return name, "", fizzEntryList{Initializes: true}
	}
	name, problem := fizzCheckEntry(list, name, file, entrypoint)
	return name, problem, list
}

func fizzCheckEntry(list fizzEntryList, name, file, entrypoint string) (string, string) {
	where, ok := list.Handlers[name]
	if ok {
		if file != "" && !strings.HasPrefix(where, strings.TrimSuffix(file, ".go")+".go:") {
			return name, fmt.Sprintf("entrypoint %q: %s is declared at %s, not in %s.go", entrypoint, name, where, strings.TrimSuffix(file, ".go"))
		}
		return name, ""
	}
	if where, ok := list.Funcs[name]; ok {
		return name, fmt.Sprintf("%s: %s is not a func(http.ResponseWriter, *http.Request)", where, name)
	}
	names := make([]string, 0, len(list.Handlers))
	for n := range list.Handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	found := "none"
	if len(names) > 0 {
		found = strings.Join(names, ", ")
	}
	return name, fmt.Sprintf("entrypoint %q: no func %s(http.ResponseWriter, *http.Request) in package main (handlers: %s)", entrypoint, name, found)
}

func (rt *fizzRuntime) loadFailed(w http.ResponseWriter, spec *fizzSpec, message string) {
	rt.state.Store(fizzStateFailed)
	fizzLog("%s/%s@%d failed to load: %s", spec.function.Namespace, spec.function.Name, spec.function.Revision, message)
	fizzError(w, 500, "FUNCTION_LOAD_FAILED", message, false)
}

func (rt *fizzRuntime) handOff(w http.ResponseWriter, r *http.Request, spec *fizzSpec, workdir, fn string) {
	started := time.Now()
	binary := filepath.Join(fn, fizzBinaryName)
	info, err := os.Lstat(binary)
	if err != nil || !info.Mode().IsRegular() {
		rt.loadFailed(w, spec, fizzBinaryName+": not in the package; Go functions are packages built by the builder (runtimes/go/build.sh)")
		return
	}
	// The archive may not keep the mode bit (the package is the function's own code either way).
	// A package the poolkeeper extracted has it already, on a file this uid cannot chmod.
	if info.Mode().Perm()&0o100 == 0 {
		if err := os.Chmod(binary, 0o700); err != nil {
			rt.loadFailed(w, spec, fizzBinaryName+": "+err.Error())
			return
		}
	}
	entry, problem, list := fizzResolveEntry(fn, spec.entrypoint)
	if problem != "" {
		rt.loadFailed(w, spec, problem)
		return
	}
	secretsDir, configsDir := rt.secretsDir, rt.configsDir
	if secretsDir == "" {
		secretsDir = filepath.Join(workdir, "secrets")
	}
	if configsDir == "" {
		configsDir = filepath.Join(workdir, "configs")
	}
	if err := fizzWriteConfig(secretsDir, spec.function.Namespace, spec.secrets); err != nil {
		rt.internalFailure(w, err)
		return
	}
	if err := fizzWriteConfig(configsDir, spec.function.Namespace, spec.configmaps); err != nil {
		rt.internalFailure(w, err)
		return
	}
	lnFile, err := rt.listener.(*net.TCPListener).File()
	if err != nil {
		rt.internalFailure(w, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		rt.internalFailure(w, fmt.Errorf("connection cannot be taken over"))
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		rt.internalFailure(w, err)
		return
	}
	connFile, err := conn.(*net.TCPConn).File()
	if err != nil {
		fizzRawAnswer(conn, 500, fizzErrorBody("INTERNAL", "specialize failed: "+err.Error(), true, ""))
		rt.state.Store(fizzStateFailed)
		return
	}
	lnFD, connFD := fizzRawFD(lnFile), fizzRawFD(connFile)
	handoff := fizzHandoff{
		ListenFD: lnFD, ConnFD: connFD, StartNs: started.UnixNano(),
		Entrypoint: entry, Function: spec.function, Concurrency: spec.concurrency,
	}
	if rt.tokenHash != nil {
		handoff.TokenHash = hex.EncodeToString(rt.tokenHash)
	}
	// Only when package main runs code before serving (build.sh's scan says so): a process that
	// starts no watchdog saves a few ms of its cold start. Spawned before any descriptor loses
	// close-on-exec, so the watchdog holds only the ones it is given.
	var watch *os.File
	var watchPID int
	if list.Initializes {
		watch, watchPID = fizzStartWatchdog(connFile, lnFile, list.Module, handoff.TokenHash)
	}
	if watch != nil {
		handoff.WatchFD, handoff.WatchPID = fizzRawFD(watch), watchPID
	}
	encoded, _ := json.Marshal(handoff)
	env := fizzFunctionEnv(spec.env, secretsDir, configsDir, string(encoded))

	// Both descriptors survive the exec; everything else the warm process holds is close-on-exec.
	for _, fd := range []int{lnFD, connFD, handoff.WatchFD} {
		if fd <= 0 {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, 0); errno != 0 {
			rt.execFailed(conn, lnFile, errno)
			return
		}
	}
	// Close idle keep-alive connections and stop accepting here; connections that arrive from
	// now on wait in the socket's backlog for the function's process.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_ = rt.server.Shutdown(ctx)
	cancel()
	if err := os.Chdir(fn); err != nil {
		rt.execFailed(conn, lnFile, err)
		return
	}
	err = syscall.Exec(binary, []string{binary}, env)
	// Only reached when the exec failed. The files stay referenced until here: a collected
	// os.File closes its descriptor, which the exec must hand over.
	runtime.KeepAlive(connFile)
	if watch != nil {
		_, _ = watch.Write([]byte(fizzWatchOK)) // this process answers, not the watchdog
		watch.Close()
	}
	rt.execFailed(conn, lnFile, err)
}

// fizzFunctionEnv is the warm process's environment (the token already gone), the function's
// own env, then the directories and the handoff, which env cannot override.
func fizzFunctionEnv(extra map[string]string, secretsDir, configsDir, handoff string) []string {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range os.Environ() {
		if i := strings.IndexByte(kv, '='); i > 0 && kv[:i] != "FIZZ_SPECIALIZE_TOKEN" {
			set(kv[:i], kv[i+1:])
		}
	}
	for k, v := range extra {
		set(k, v)
	}
	set("FIZZ_SECRETS_DIR", secretsDir)
	set("FIZZ_CONFIGS_DIR", configsDir)
	set("FIZZ_GO_HANDOFF", handoff)
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// execFailed: the binary did not start (not an executable for this machine, a noexec mount).
// The instance keeps its socket, answers the specialize with FUNCTION_LOAD_FAILED and stays failed.
func (rt *fizzRuntime) execFailed(conn net.Conn, lnFile *os.File, cause error) {
	rt.state.Store(fizzStateFailed)
	message := fizzBinaryName + ": does not start: " + cause.Error()
	fizzLog("failed to load: %s", message)
	fizzRawAnswer(conn, 500, fizzErrorBody("FUNCTION_LOAD_FAILED", message, false, ""))
	ln, err := net.FileListener(lnFile)
	if err != nil {
		fizzLog("cannot serve again: %v", err)
		os.Exit(1)
	}
	rt.listener = ln
	rt.server = rt.newServer()
	go func() { _ = rt.server.Serve(ln) }()
}

func (rt *fizzRuntime) internalFailure(w http.ResponseWriter, err error) {
	rt.state.Store(fizzStateFailed)
	fizzLog("specialize failed: %v", err)
	w.Header().Set("Connection", "close")
	fizzError(w, 500, "INTERNAL", "specialize failed: "+err.Error(), true)
}

// fizzWriteConfig writes <base>/<namespace>/<name>/<key> files 0400 in 0700 directories (not 0500:
// whoever removes the instance's directory must be able to unlink them). An existing base (a
// Kubernetes emptyDir) is used as it is. Names and keys were validated: no '/', '.' or '..'.
func fizzWriteConfig(base, namespace string, data map[string]map[string][]byte) error {
	for name, keys := range data {
		dir := filepath.Join(base, namespace, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for key, value := range keys {
			f, err := os.OpenFile(filepath.Join(dir, key), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o400)
			if err != nil {
				return err
			}
			_, err = f.Write(value)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// fizzRawFD is the descriptor number without os.File.Fd's side effect (it would switch the shared
// socket to blocking mode under the running server).
func fizzRawFD(f *os.File) int {
	fd := -1
	if sc, err := f.SyscallConn(); err == nil {
		_ = sc.Control(func(raw uintptr) { fd = int(raw) })
	}
	return fd
}

// fizzStartWatchdog starts this binary again as the watchdog of the function's initialization
// (0fizz_boot.go): it holds the pipe's read end and copies of the specialize connection and the
// listening socket. If the function's process dies before it answered, the watchdog answers
// FUNCTION_LOAD_FAILED on the connection and then serves the instance as failed (healthz
// "failed", 503, 409) until it is stopped (SIGTERM, stdin EOF), as the contract has a failed
// instance do. Returns the pipe's write end (close-on-exec still set) and the watchdog's pid; nil
// when it could not start, and the handoff goes on without it.
func fizzStartWatchdog(conn, listener *os.File, module, tokenHash string) (*os.File, int) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, 0
	}
	defer r.Close()
	watch, _ := json.Marshal(map[string]string{"module": module, "tokenHash": tokenHash})
	proc, err := os.StartProcess(self, []string{self, "--fizz-watchdog"}, &os.ProcAttr{
		Env:   append(os.Environ(), "FIZZ_GO_WATCH="+string(watch)),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, r, conn, listener},
	})
	if err != nil {
		w.Close()
		fizzLog("watchdog: %v", err)
		return nil, 0
	}
	return w, proc.Pid
}

// fizzWatchdog runs as `fizz-go-warm --fizz-watchdog` with the pipe on fd 3, the specialize
// connection on fd 4 and the listening socket on fd 5.
func fizzWatchdog() {
	pipe, connFile, lnFile := os.NewFile(3, "watch"), os.NewFile(4, "specialize"), os.NewFile(5, "listener")
	report, _ := io.ReadAll(io.LimitReader(pipe, 1<<20))
	if string(report) == fizzWatchOK {
		os.Exit(0)
	}
	var watch struct{ Module, TokenHash string }
	_ = json.Unmarshal([]byte(os.Getenv("FIZZ_GO_WATCH")), &watch)
	os.Unsetenv("FIZZ_GO_WATCH")
	message := "the function's process exited during initialization without a crash report (os.Exit or log.Fatal in an init, or a panic in a dependency's init); see the instance's log"
	if text := strings.TrimSpace(string(report)); text != "" {
		message = fizzCrashMessage(text, watch.Module)
	}
	fizzLog("failed to load: %s", message)
	rt := fizzNewRuntime()
	if watch.TokenHash != "" {
		rt.tokenHash, _ = hex.DecodeString(watch.TokenHash)
	}
	rt.state.Store(fizzStateFailed)
	ln, err := net.FileListener(lnFile)
	if err != nil {
		fizzLog("watchdog: %v", err)
		os.Exit(1)
	}
	if conn, err := net.FileConn(connFile); err == nil {
		go fizzRawAnswer(conn, 500, fizzErrorBody("FUNCTION_LOAD_FAILED", message, false, ""))
	}
	// Nobody is this process's parent any more: the poolkeeper stops it (SIGTERM, stdin EOF under
	// the process backend, the pod's end on Kubernetes) long before this bound, which is only
	// there so that nothing can leave it running for good.
	time.AfterFunc(fizzFailedLifetime, func() { rt.drain("failed instance kept for " + fizzFailedLifetime.String()) })
	rt.serve(ln)
}
