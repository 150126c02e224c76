//go:build fizzwarm

// The warm instance: no user code; it serves the contract until a specialize hands it over.
package main

import (
	"net"
	"net/http"
	"os"
	"strconv"
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

// fizzAnnounceReady tells the process backend the instance can take a specialize, sooner than its
// /healthz polling with back-off would find out (docs/runtime-contract.md, FIZZ_READY_FD). Go has
// no warm-up worth waiting for, so it announces on listen. The descriptor is closed either way,
// before any specialize can be served: the function's binary, exec'd later from this process,
// must not inherit it (it is not close-on-exec, being inherited), and neither variable reaches
// the function's environment (built from os.Environ at the handoff).
func fizzAnnounceReady() {
	raw, ok := os.LookupEnv("FIZZ_READY_FD")
	os.Unsetenv("FIZZ_READY_FD")
	os.Unsetenv("FIZZ_WARM_UP")
	if !ok {
		return
	}
	fd, err := strconv.Atoi(raw)
	if err != nil || fd < 3 {
		// Never stdin, stdout or stderr: polling finds the instance instead.
		fizzLog("FIZZ_READY_FD=%s is not an inherited descriptor above 2; readiness not announced", raw)
		return
	}
	pipe := os.NewFile(uintptr(fd), "ready")
	if pipe == nil {
		return
	}
	if _, err := pipe.Write([]byte("ready\n")); err != nil {
		fizzLog("readiness not announced: %v", err)
	}
	pipe.Close()
}
