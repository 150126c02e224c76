// Answers in the platform's shapes: JSON bodies and {"error":{code,message,retryable,field?}}.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

func fizzErrorBody(code, message string, retryable bool, field string) map[string]any {
	e := map[string]any{"code": code, "message": message, "retryable": retryable}
	if field != "" {
		e["field"] = field
	}
	return map[string]any{"error": e}
}

// The 401 of a specialize without the instance's token (both builds).
var fizzUnauthenticated = fizzErrorBody("UNAUTHENTICATED", "x-fizz-specialize-token: missing or wrong; only the poolkeeper specializes", false, "x-fizz-specialize-token")

func fizzJSON(w http.ResponseWriter, status int, value any) {
	body, err := json.Marshal(value)
	if err != nil {
		body = []byte(`{"error":{"code":"INTERNAL","message":"unencodable answer","retryable":true}}`)
		status = 500
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func fizzError(w http.ResponseWriter, status int, code, message string, retryable bool) {
	fizzJSON(w, status, fizzErrorBody(code, message, retryable, ""))
}

func fizzFieldError(w http.ResponseWriter, status int, code, field, message string) {
	fizzJSON(w, status, fizzErrorBody(code, field+": "+message, false, field))
}

// fizzRequestID is a random UUID (version 4), for direct traffic: the gateway always sends one.
func fizzRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// How long, and how many bytes at most, a refused request's unread body is discarded for after
// the answer (see answerUnread). The time bounds what a slow or endless sender can hold; the bytes
// bound the work for a fast one, and are never below the largest body a client may legitimately
// send, so that a 413 reaches a client sending somewhat more than the cap.
const (
	fizzLingerTime     = 2 * time.Second
	fizzLingerMinBytes = 64 * 1024 * 1024
)

// answerUnread answers a request whose body will not be read (a specialize refused before its
// archive or JSON, a body over its cap), then closes the connection the way that gets the answer
// to the client: a lingering close. Closing a socket with unread data makes the kernel send a
// reset, and a client still sending a multi-MB body then fails its write with ECONNRESET and
// never reads the answer that was already on its way. So the answer goes out with
// "Connection: close" and the body is discarded, unread into memory, until it ends, for up to
// fizzLingerTime and the byte cap; then the server closes the connection. The instance's state
// is never touched here, and each drain runs on its own connection's goroutine, so it holds up
// nothing else (at most a SIGTERM's drain, by fizzLingerTime); release, when given, runs right
// before the answer is written (a user call gives its concurrency slot back there: its client may
// send the next call as soon as it has this answer, while this connection still drains).
func (rt *fizzRuntime) answerUnread(w http.ResponseWriter, r *http.Request, status int, value any, release ...func()) {
	rc := http.NewResponseController(w)
	// Without it the server would discard at most 256 KiB of the body itself before answering
	// and then reset the connection on the rest.
	_ = rc.EnableFullDuplex()
	w.Header().Set("Connection", "close")
	for _, f := range release {
		f()
	}
	fizzJSON(w, status, value)
	_ = rc.Flush()
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(fizzLingerTime))
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, rt.lingerBytes()))
}

func (rt *fizzRuntime) lingerBytes() int64 {
	return max(rt.maxPkgBytes, rt.maxBody, fizzLingerMinBytes)
}

// fizzRawAnswer writes a whole HTTP/1.1 answer on a connection taken from the server (the
// specialize connection across the exec), then closes it gracefully: our side first, then
// whatever the client still sends (up to 2 s), so the answer is never lost to a reset.
func fizzRawAnswer(conn net.Conn, status int, value any) {
	body, _ := json.Marshal(value)
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		status, http.StatusText(status), len(body))
	_, _ = conn.Write(append([]byte(head), body...))
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
	}
	conn.Close()
}
