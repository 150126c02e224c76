//go:build fizzwarm

// The warm instance: no user code; it serves the contract until a specialize hands it over.
package main

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
)

// Only the function's build (fizz_entry.go, generated) has handlers and a module.
var fizzEntries = map[string]http.HandlerFunc{}

const fizzModulePath = "fizz.invalid"

func fizzStart() {
	if len(os.Args) == 2 && os.Args[1] == "--fizz-watchdog" {
		fizzWatchdog()
		return
	}
	rt := fizzNewRuntime()
	ln, err := net.Listen("tcp", net.JoinHostPort(rt.host, rt.port))
	if err != nil {
		fizzLog("cannot listen on %s:%s: %v", rt.host, rt.port, err)
		os.Exit(1)
	}
	suffix := ""
	if rt.instanceID != "" {
		suffix = " as " + rt.instanceID
	}
	fizzLog("go runtime listening on %s%s", ln.Addr(), suffix)
	// After the line above is in the stderr pipe: the poolkeeper reads it as the warm instance's.
	fizzAnnounceReady()
	rt.serve(ln)
}

// fizzReadyPipe is FIZZ_READY_FD's pipe, taken at package initialization, before the runtime opens
// a descriptor of its own (the poller, the listener): later the number could name one of those,
// and closing it after the write would close the listener (a variable set without the descriptor
// being passed killed the instance). Only an inherited pipe or socket is written, and whatever the
// number names is made close-on-exec at once.
var fizzReadyPipe = fizzTakeReadyPipe()

func fizzTakeReadyPipe() *os.File {
	raw, ok := os.LookupEnv("FIZZ_READY_FD")
	os.Unsetenv("FIZZ_READY_FD")
	os.Unsetenv("FIZZ_WARM_UP")
	if !ok {
		return nil
	}
	fd, err := strconv.Atoi(raw)
	if err != nil || fd < 3 {
		// Never stdin, stdout or stderr: polling finds the instance instead.
		fizzLog("FIZZ_READY_FD=%s is not an inherited descriptor above 2; readiness not announced", raw)
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		fizzLog("FIZZ_READY_FD=%s is not an inherited descriptor; readiness not announced", raw)
		return nil
	}
	// Whatever it is, the function's binary does not inherit it.
	syscall.CloseOnExec(fd)
	// A pipe, or a socket pair (what Node's spawn gives for "pipe"); never a file it would append to.
	if kind := st.Mode & syscall.S_IFMT; kind != syscall.S_IFIFO && kind != syscall.S_IFSOCK {
		fizzLog("FIZZ_READY_FD=%s is not a pipe; readiness not announced", raw)
		return nil
	}
	return os.NewFile(uintptr(fd), "ready")
}

// fizzAnnounceReady tells the process backend the instance can take a specialize, sooner than its
// /healthz polling with back-off would find out (docs/runtime-contract.md, FIZZ_READY_FD). Go has
// no warm-up worth waiting for, so it announces on listen. The pipe is closed either way, before
// any specialize can be served: the function's binary, exec'd later from this process, must not
// hold it, and neither variable reaches the function's environment (built from os.Environ at the
// handoff; both were dropped at initialization).
func fizzAnnounceReady() {
	pipe := fizzReadyPipe
	fizzReadyPipe = nil
	if pipe == nil {
		return
	}
	if _, err := pipe.Write([]byte("ready\n")); err != nil {
		fizzLog("readiness not announced: %v", err)
	}
	pipe.Close()
}
