//go:build fizzwarm

// The warm instance: no user code; it serves the contract until a specialize hands it over.
package main

import (
	"net"
	"net/http"
	"os"
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
	rt.serve(ln)
}
