// Standalone (stdlib-only) module so the generator runs even when the parent
// go.mod is not yet resolvable (k8s.io/* v0.0.0 requirements without replaces).
module fizz.dev/k8s-lite/hack/genreplace

go 1.25.0
