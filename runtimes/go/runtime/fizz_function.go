//go:build !fizzwarm

// The function's process: exec'd by the warm instance (FIZZ_GO_HANDOFF names the listening socket
// and the specialize connection it inherited), it answers that specialize itself and serves the
// function on the same socket. Run without a handoff (a developer's machine, a custom image), it
// listens on PORT and serves FIZZ_ENTRYPOINT (default Handler) at once.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type fizzHandoffIn struct {
	ListenFD    int             `json:"listenFd"`
	ConnFD      int             `json:"connFd"`
	StartNs     int64           `json:"startNs"`
	Entrypoint  string          `json:"entrypoint"`
	Function    fizzFunctionRef `json:"function"`
	Concurrency int             `json:"concurrency"`
	TokenHash   string          `json:"tokenHash"`
	WatchPID    int             `json:"watchPid"`
}

func fizzStart() {
	rt := fizzNewRuntime()
	raw, handed := os.LookupEnv("FIZZ_GO_HANDOFF")
	os.Unsetenv("FIZZ_GO_HANDOFF")
	if !handed {
		fizzStandalone(rt)
		return
	}
	var h fizzHandoffIn
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		fizzLog("FIZZ_GO_HANDOFF: %v", err)
		os.Exit(2)
	}
	if h.TokenHash != "" {
		rt.tokenHash, _ = hex.DecodeString(h.TokenHash)
	}
	lnFile := os.NewFile(uintptr(h.ListenFD), "listener")
	ln, err := net.FileListener(lnFile)
	lnFile.Close()
	if err != nil {
		fizzLog("inherited listener: %v", err)
		os.Exit(1)
	}
	connFile := os.NewFile(uintptr(h.ConnFD), "specialize")
	conn, err := net.FileConn(connFile)
	connFile.Close()
	if err != nil {
		fizzLog("inherited specialize connection: %v", err)
		conn = nil
	}
	problem := rt.activate(h.Entrypoint, h.Function, h.Concurrency)
	label := fmt.Sprintf("%s/%s@%d", h.Function.Namespace, h.Function.Name, h.Function.Revision)
	if conn != nil {
		if problem != "" {
			fizzLog("%s failed to load: %s", label, problem)
			go fizzRawAnswer(conn, 500, fizzErrorBody("FUNCTION_LOAD_FAILED", problem, false, ""))
		} else {
			loadMs := math.Round(float64(time.Now().UnixNano()-h.StartNs)/1e5) / 10
			fizzLog("specialized %s (entrypoint %s) in %sms", label, h.Entrypoint, strconv.FormatFloat(loadMs, 'f', -1, 64))
			go fizzRawAnswer(conn, 200, map[string]any{"status": "specialized", "loadMs": loadMs})
		}
	}
	fizzInitialized()
	if h.WatchPID > 0 {
		// The watchdog is this process's child now (it was the warm process's): reap it.
		go func() {
			var status syscall.WaitStatus
			_, _ = syscall.Wait4(h.WatchPID, &status, 0, nil)
		}()
	}
	rt.serve(ln)
}

// activate selects the handler; a name it does not know leaves the instance failed.
func (rt *fizzRuntime) activate(entry string, fn fizzFunctionRef, concurrency int) string {
	if concurrency < 1 {
		concurrency = 50
	}
	rt.function, rt.concurrency, rt.gate = fn, concurrency, fizzNewGate(concurrency)
	handler, ok := fizzEntries[entry]
	if !ok {
		rt.state.Store(fizzStateFailed)
		names := make([]string, 0, len(fizzEntries))
		for n := range fizzEntries {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Sprintf("entrypoint %q: no func %s(http.ResponseWriter, *http.Request) in package main (handlers: %s)", entry, entry, strings.Join(names, ", "))
	}
	rt.handler = handler
	rt.state.Store(fizzStateSpecialized)
	return ""
}

func fizzStandalone(rt *fizzRuntime) {
	entry := os.Getenv("FIZZ_ENTRYPOINT")
	if entry == "" {
		entry = "Handler"
	}
	if problem := rt.activate(entry, fizzFunctionRef{Namespace: "default", Name: "function"}, 0); problem != "" {
		fizzLog("%s", problem)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(rt.host, rt.port))
	if err != nil {
		fizzLog("cannot listen on %s:%s: %v", rt.host, rt.port, err)
		os.Exit(1)
	}
	fizzLog("serving %s on %s", entry, ln.Addr())
	rt.serve(ln)
}

// specialize on the function's process: the token first (as everywhere), then always 409.
func (rt *fizzRuntime) specialize(w http.ResponseWriter, r *http.Request) {
	if !rt.authorized(r.Header.Values("X-Fizz-Specialize-Token")) {
		rt.answerUnread(w, r, 401, fizzUnauthenticated)
		return
	}
	rt.refusal(w, r)
}
