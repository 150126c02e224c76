// User traffic: 421/503 before the call, the concurrency gate (in flight + an equal queue, then
// 429), FIZZ_MAX_BODY_BYTES, the request id, and a handler's panic as 500 FUNCTION_ERROR naming
// the user's file and line.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
)

// fizzGate admits `limit` calls at once and lets `limit` more wait; the rest are refused.
type fizzGate struct {
	slots   chan struct{}
	waiting atomic.Int64
	max     int64
}

func fizzNewGate(limit int) *fizzGate {
	return &fizzGate{slots: make(chan struct{}, limit), max: int64(2 * limit)}
}

// enter blocks until a slot is free; false when the instance is full, or the client went away.
func (g *fizzGate) enter(r *http.Request) bool {
	if g.waiting.Add(1) > g.max {
		g.waiting.Add(-1)
		return false
	}
	select {
	case g.slots <- struct{}{}:
		return true
	case <-r.Context().Done():
		g.waiting.Add(-1)
		return false
	}
}

func (g *fizzGate) leave() {
	<-g.slots
	g.waiting.Add(-1)
}

// fizzSlot is one admitted call's place in the gate. It is given back once, right before the
// answer's last write: the gateway sends its next call the moment it has an answer, on another
// connection, and that call must not meet the slot still taken. The handler may still be running
// then (work after a complete answer), or already gone (a client that went away, a panic).
type fizzSlot struct {
	gate *fizzGate
	done atomic.Bool
}

func (s *fizzSlot) free() {
	if s.done.CompareAndSwap(false, true) {
		s.gate.leave()
	}
}

func (rt *fizzRuntime) invoke(w http.ResponseWriter, r *http.Request, targeted bool, target string) {
	if targeted && rt.instanceID != "" && target != rt.instanceID {
		fizzError(w, 421, "MISDIRECTED", fmt.Sprintf("this is instance %s, not %s", rt.instanceID, target), true)
		return
	}
	switch rt.state.Load() {
	case fizzStateSpecialized:
	case fizzStateFailed:
		fizzError(w, 503, "NOT_SPECIALIZED", "the function failed to load", true)
		return
	default:
		fizzError(w, 503, "NOT_SPECIALIZED", "the instance is not specialized", true)
		return
	}
	if !rt.gate.enter(r) {
		if r.Context().Err() != nil {
			return // the client is gone; nobody reads an answer
		}
		w.Header().Set("Retry-After", "1")
		msg := fmt.Sprintf("%d calls running and %d queued", rt.concurrency, rt.concurrency)
		fizzError(w, 429, "INSTANCE_BUSY", msg, true)
		return
	}
	// Answers the handler leaves unfinished (buffered by net/http, a chunked stream's end) are
	// written after it returns, so this is before their last write.
	slot := &fizzSlot{gate: rt.gate}
	defer slot.free()
	if !rt.limitBody(w, r, slot.free) {
		return
	}
	markID := r.Header.Get("X-Request-Id")
	if markID == "" {
		r.Header.Set("X-Request-Id", fizzRequestID())
	} else if !fizzMarkable(markID) {
		markID = ""
	}
	// The instance's own identity wins over anything a client claims.
	r.Header.Set("X-Fizz-Function-Namespace", rt.function.Namespace)
	r.Header.Set("X-Fizz-Function-Name", rt.function.Name)
	r.Header.Set("X-Fizz-Function-Revision", strconv.FormatInt(rt.function.Revision, 10))
	fw := &fizzWriter{ResponseWriter: w, slot: slot, head: r.Method == http.MethodHead}
	seq := fizzMarker.begin(markID)
	defer fizzMarker.end(seq)
	defer rt.recoverCall(fw, r, seq, markID)
	rt.handler(fw, r)
}

// limitBody refuses a body over FIZZ_MAX_BODY_BYTES with 413. A declared length is checked up
// front and the body is left to stream; a chunked body is read first, as only its end tells. The
// call's slot is freed right before the refusal is written.
func (rt *fizzRuntime) limitBody(w http.ResponseWriter, r *http.Request, free func()) bool {
	tooLarge := func() bool {
		rt.answerUnread(w, r, 413, fizzErrorBody("PAYLOAD_TOO_LARGE", fmt.Sprintf("request body over %d bytes (FIZZ_MAX_BODY_BYTES)", rt.maxBody), false, ""), free)
		return false
	}
	if r.ContentLength > rt.maxBody {
		return tooLarge()
	}
	if r.ContentLength >= 0 || r.Body == nil || r.Body == http.NoBody {
		return true
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, rt.maxBody+1))
	if err != nil {
		w.Header().Set("Connection", "close")
		free()
		fizzError(w, 400, "INVALID_BODY", "request body: "+err.Error(), false)
		return false
	}
	if int64(len(data)) > rt.maxBody {
		return tooLarge()
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	return true
}

func (rt *fizzRuntime) recoverCall(fw *fizzWriter, r *http.Request, seq uint64, markID string) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	where := fizzPanicSite()
	message := fmt.Sprintf("panic: %v", v)
	if where != "" {
		message = where + ": " + message
	}
	fizzMarker.callLog(seq, markID, fmt.Sprintf("[fizz] function error (request %s): %s\n%s\n", r.Header.Get("X-Request-Id"), message, debug.Stack()))
	if fw.wrote {
		// Part of the answer is out: all that is left is to cut it short, so the client sees a
		// broken response rather than a truncated one that looks whole.
		panic(http.ErrAbortHandler)
	}
	for k := range fw.Header() {
		delete(fw.Header(), k)
	}
	fw.slot.free()
	fizzError(fw.ResponseWriter, 500, "FUNCTION_ERROR", message, false)
}

// fizzPanicSite names the user's file and line where a panic started: the first frame of the
// panicking goroutine that is in the function's module (not the Go runtime, not these files),
// else the first one outside the runtime. With -trimpath, paths are <module>/<file>.
func fizzPanicSite() string {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	fallback := ""
	prefix := fizzModulePath + "/"
	for {
		f, more := frames.Next()
		if f.File != "" && !strings.HasPrefix(f.Function, "runtime.") && !fizzOwnFile(f.File) {
			if strings.HasPrefix(f.File, prefix) {
				return fmt.Sprintf("%s:%d", strings.TrimPrefix(f.File, prefix), f.Line)
			}
			if fallback == "" && !strings.HasPrefix(f.File, "net/http/") {
				fallback = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
		}
		if !more {
			return fallback
		}
	}
}

func fizzOwnFile(file string) bool {
	base := file[strings.LastIndexByte(file, '/')+1:]
	return strings.HasPrefix(base, "fizz_") || strings.HasPrefix(base, "0fizz_")
}

// fizzWriter remembers whether the answer has started, so a panic before that can still answer
// 500 FUNCTION_ERROR, and frees the call's slot right before the write that completes the answer:
// the one reaching a declared Content-Length (flushed at once, so it is the last write), or a
// flush once no body can follow (204, 304, HEAD). Otherwise a handler that writes its whole
// answer and then keeps working, or whose large answer waits on a slow reader, would hold the
// slot after its client has the answer. Unwrap lets http.ResponseController reach the real writer.
type fizzWriter struct {
	http.ResponseWriter
	slot     *fizzSlot
	head     bool
	wrote    bool
	final    bool  // the status is decided (a final one, explicit or implied by a write)
	bodyless bool  // no body can follow it: 204, 304, or an answer to HEAD
	declared int64 // the Content-Length the handler set, -1 for none
	written  int64
}

func (w *fizzWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code) // panics on an invalid code: the handler's error
	if code >= 200 || code == 101 {
		w.wrote = true
	}
	if code >= 200 && !w.final {
		w.decide(code)
	}
}

// decide reads the answer's framing as net/http does when the status is written.
func (w *fizzWriter) decide(code int) {
	w.final = true
	w.bodyless = w.head || code == http.StatusNoContent || code == http.StatusNotModified
	w.declared = -1
	if v, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && v >= 0 {
		w.declared = v
	}
}

func (w *fizzWriter) Write(p []byte) (int, error) {
	w.wrote = true
	if !w.final {
		w.decide(http.StatusOK)
	}
	last := !w.bodyless && w.declared >= 0 && len(p) > 0 && w.written+int64(len(p)) >= w.declared
	if last {
		w.slot.free()
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	if last && err == nil {
		w.flush()
	}
	return n, err
}

func (w *fizzWriter) Flush() {
	w.wrote = true
	if !w.final {
		w.decide(http.StatusOK)
	}
	if w.bodyless || (w.declared >= 0 && w.written >= w.declared) {
		w.slot.free()
	}
	w.flush()
}

func (w *fizzWriter) flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *fizzWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
