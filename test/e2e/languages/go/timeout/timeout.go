package main

import (
	"net/http"
	"time"
)

// Handler: ?slow sleeps past any small function timeout; otherwise it answers at once.
func Handler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("slow") {
		time.Sleep(30 * time.Second)
	}
	w.Write([]byte("awake"))
}
