package main

import (
	"errors"
	"net/http"
)

func explode() {
	panic(errors.New("boom from the function")) // FIZZ-E2E-THROW
}

// Handler panics: the runtime answers 500 FUNCTION_ERROR naming this file and line.
func Handler(w http.ResponseWriter, r *http.Request) {
	explode()
	w.Write([]byte("not reached"))
}
