// The watchdog's side of initialization failures (see 0fizz_boot.go), shared by both builds.
package main

import (
	"fmt"
	"strings"
)

const fizzWatchOK = "fizz-initialized\n"

// fizzCrashMessage turns a Go crash report into the one-line load error: "<file>:<line>: panic:
// <value>", the frame being the first in the function's module (paths are <module>/<file> under
// -trimpath), else the first outside the Go runtime.
func fizzCrashMessage(report, module string) string {
	lines := strings.Split(strings.ReplaceAll(report, "\r", ""), "\n")
	what := strings.TrimSpace(lines[0])
	for _, l := range lines {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			what = strings.TrimSpace(strings.TrimSuffix(l, " [recovered]"))
			break
		}
	}
	prefix := module + "/"
	fallback := ""
	for i := 1; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "\t") {
			continue
		}
		file := strings.TrimPrefix(l, "\t")
		if j := strings.LastIndex(file, " +0x"); j >= 0 {
			file = file[:j]
		}
		fn := strings.TrimSpace(lines[i-1])
		if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(file, "runtime/") || fizzOwnFile(strings.SplitN(file, ":", 2)[0]) {
			continue
		}
		if module != "" && strings.HasPrefix(file, prefix) {
			return fmt.Sprintf("%s: %s", strings.TrimPrefix(file, prefix), what)
		}
		if fallback == "" {
			fallback = file
		}
	}
	if fallback != "" {
		return fmt.Sprintf("%s: %s", fallback, what)
	}
	return what
}
