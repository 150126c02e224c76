// Baseline for the gateway benchmark: Go's standard-library reverse proxy in front of the same
// function instance, with connection reuse tuned the way a production Go proxy would be.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "upstream base URL, e.g. http://127.0.0.1:40000")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		log.Fatalf("bad -target %q", *target)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	srv := &http.Server{Addr: *listen, Handler: proxy}
	log.Printf("goproxy listening on %s -> %s", *listen, *target)
	log.Fatal(srv.ListenAndServe())
}
