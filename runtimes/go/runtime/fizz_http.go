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
