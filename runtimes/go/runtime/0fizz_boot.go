//go:build !fizzwarm

// The function's process, first thing in package main's initialization: this file's name sorts
// before the user's files (go build presents them in lexical order) and its variable depends on
// none of theirs, so it is initialized before any of the package's other variables and init
// functions run. A panic there would kill the process before it answers the specialize; this
// sends the crash report to the warm instance's watchdog, which answers FUNCTION_LOAD_FAILED
// naming the file and line. (Imported packages initialize before package main: a panic in a
// dependency's init is seen by the watchdog as an exit without a report.)
package main

import (
	"encoding/json"
	"os"
	"runtime/debug"
)

// fizzWatch is the pipe to the watchdog, until the specialize is answered.
var fizzWatch = fizzBoot()

func fizzBoot() *os.File {
	var h struct {
		WatchFD int `json:"watchFd"`
	}
	if json.Unmarshal([]byte(os.Getenv("FIZZ_GO_HANDOFF")), &h) != nil || h.WatchFD <= 0 {
		return nil
	}
	f := os.NewFile(uintptr(h.WatchFD), "watchdog")
	if debug.SetCrashOutput(f, debug.CrashOptions{}) != nil {
		return nil
	}
	return f
}

// fizzInitialized tells the watchdog the process got through initialization and answered.
func fizzInitialized() {
	if fizzWatch == nil {
		return
	}
	_ = debug.SetCrashOutput(nil, debug.CrashOptions{})
	_, _ = fizzWatch.Write([]byte(fizzWatchOK))
	fizzWatch.Close()
	fizzWatch = nil
}
