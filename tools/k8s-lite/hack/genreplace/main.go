// Command genreplace pins tools/k8s-lite/go.mod to one k8s.io/kubernetes
// release.
//
// k8s.io/kubernetes requires its staging modules (k8s.io/api, apimachinery,
// client-go, apiserver, ...) at the placeholder version v0.0.0 and replaces
// them with ./staging/src/... directories that are not part of the published
// module. Any module that imports k8s.io/kubernetes therefore has to carry its
// own replace list. This program GENERATES that list from the release's own
// go.mod instead of hand-copying it:
//
//  1. `go mod download -json k8s.io/kubernetes@vX.Y.Z` fetches the release's
//     go.mod from the module proxy;
//  2. `go mod edit -json <that go.mod>` parses it;
//  3. every staging module (a replace to ./staging/..., or a k8s.io/* require at
//     v0.0.0) is mapped to the published tag v0.Y.Z;
//  4. the etcd modules the release pins are required at exactly that version
//     (k8s-lite embeds go.etcd.io/etcd/server/v3/embed);
//  5. the result is applied to the target go.mod with `go mod edit`
//     (old k8s.io replaces are dropped first), together with the release's
//     `go` and `godebug` lines.
//
// Run it through ../update-deps.sh, which also runs `go mod tidy`.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

type modFile struct {
	Go      string
	GoDebug []struct{ Key, Value string }
	Require []struct {
		Path     string
		Version  string
		Indirect bool
	}
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
}

func run(dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func main() {
	kube := flag.String("kube", "", "k8s.io/kubernetes release, e.g. v1.35.4 (required)")
	target := flag.String("gomod", "../../go.mod", "go.mod to rewrite")
	dryRun := flag.Bool("n", false, "print the go mod edit arguments instead of applying them")
	flag.Parse()

	m := regexp.MustCompile(`^v1\.(\d+)\.(\d+)$`).FindStringSubmatch(*kube)
	if m == nil {
		fail("-kube must be a release tag like v1.35.4, got %q", *kube)
	}
	stagingVersion := fmt.Sprintf("v0.%s.%s", m[1], m[2])

	// 1. download the release's go.mod
	tmp, err := os.MkdirTemp("", "genreplace")
	check(err)
	defer os.RemoveAll(tmp)
	// On failure `go mod download -json` still prints JSON with an Error field.
	out, dlErr := run(tmp, "go", "mod", "download", "-json", "k8s.io/kubernetes@"+*kube)
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &dl); err != nil {
		check(errors.Join(dlErr, err))
	}
	if dl.Error != "" || dl.GoMod == "" {
		fail("go mod download k8s.io/kubernetes@%s: %s", *kube, dl.Error)
	}

	// 2. parse it
	out, err = run(tmp, "go", "mod", "edit", "-json", dl.GoMod)
	check(err)
	var km modFile
	check(json.Unmarshal(out, &km))

	// 3. staging modules
	staging := map[string]bool{}
	for _, r := range km.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/") && strings.HasPrefix(r.Old.Path, "k8s.io/") {
			staging[r.Old.Path] = true
		}
	}
	for _, r := range km.Require {
		if strings.HasPrefix(r.Path, "k8s.io/") && r.Version == "v0.0.0" {
			staging[r.Path] = true
		}
	}
	if len(staging) == 0 {
		fail("no staging modules found in %s", dl.GoMod)
	}
	names := make([]string, 0, len(staging))
	for p := range staging {
		names = append(names, p)
	}
	sort.Strings(names)

	// drop k8s.io replaces left by an earlier run (another release)
	var edits []string
	out, err = run(".", "go", "mod", "edit", "-json", *target)
	check(err)
	var cur modFile
	check(json.Unmarshal(out, &cur))
	for _, r := range cur.Replace {
		if strings.HasPrefix(r.Old.Path, "k8s.io/") {
			edits = append(edits, "-dropreplace="+r.Old.Path)
		}
	}

	if km.Go != "" {
		edits = append(edits, "-go="+km.Go)
	}
	for _, g := range km.GoDebug {
		edits = append(edits, fmt.Sprintf("-godebug=%s=%s", g.Key, g.Value))
	}
	edits = append(edits, "-require=k8s.io/kubernetes@"+*kube)
	for _, p := range names {
		edits = append(edits, fmt.Sprintf("-replace=%s=%s@%s", p, p, stagingVersion))
	}
	// 4. etcd at the release's pin
	for _, r := range km.Require {
		if strings.HasPrefix(r.Path, "go.etcd.io/etcd/") {
			edits = append(edits, fmt.Sprintf("-require=%s@%s", r.Path, r.Version))
		}
	}

	if *dryRun {
		fmt.Println(strings.Join(edits, "\n"))
		return
	}
	// 5. apply
	_, err = run(".", "go", append([]string{"mod", "edit"}, append(edits, *target)...)...)
	check(err)
	fmt.Fprintf(os.Stderr, "genreplace: %s -> k8s.io/kubernetes %s, %d staging modules at %s\n",
		*target, *kube, len(names), stagingVersion)
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "genreplace: "+format+"\n", args...)
	os.Exit(1)
}
