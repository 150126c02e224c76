//go:build fizzwarm

// The package the poolkeeper already extracted (process backend, own uid): archiveFile names a
// directory it made in this instance's work dir and gave to this uid, holding hard links to its
// cached copy, root's and read-only, extracted and checked there once per digest from bytes it
// hashed against the digest (services/poolkeeper/src/package-tree.ts). The instance renames it
// to fn/ and runs it as it is: no un-gzip, untar, write or hash of its own.
package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const fizzPackagePrefix = ".fizz-package-"

func (rt *fizzRuntime) specializePackage(w http.ResponseWriter, r *http.Request, spec *fizzSpec, workdir, fn string) {
	if _, err := os.Lstat(fn); !os.IsNotExist(err) {
		rt.state.Store(fizzStateWarm) // not ours to remove: something was extracted here before
		fizzJSON(w, 409, fizzErrorBody("ALREADY_SPECIALIZED", "this instance's fn/ directory already exists; an instance is specialized once", false, ""))
		return
	}
	if err := fizzTakePackage(workdir, spec.archiveFile, fn); err != nil {
		rt.state.Store(fizzStateWarm)
		fizzFieldError(w, 400, "VALIDATION_FAILED", "archiveFile", "archiveFile: "+err.Error())
		return
	}
	rt.handOff(w, r, spec, workdir, fn)
}

// fizzTakePackage checks what the name holds and renames it to fn. A directory of this uid (the
// poolkeeper chowned it; nothing else runs as this uid before a specialize), never through a
// link; its binary, when there, a regular file this uid cannot change (not its own, no write
// bit): the cache's file, not one the instance could have made.
func fizzTakePackage(workdir, name, fn string) error {
	dir := filepath.Join(workdir, name)
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return fmt.Errorf("cannot find %s: %v", name, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("%s is not a directory", name)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is not this instance's directory", name)
	}
	var bin syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dir, fizzBinaryName), &bin); err == nil {
		if bin.Mode&syscall.S_IFMT != syscall.S_IFREG || int(bin.Uid) == os.Geteuid() || bin.Mode&0o222 != 0 {
			return fmt.Errorf("%s/%s is not a read-only file of the poolkeeper's", name, fizzBinaryName)
		}
	}
	if err := os.Rename(dir, fn); err != nil {
		return fmt.Errorf("cannot take %s: %v", name, strings.TrimPrefix(err.Error(), "rename "))
	}
	return nil
}
