package main

import "net/http"

// Handler answers with what greet.go says.
func Handler(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte(greet("fizz")))
}
