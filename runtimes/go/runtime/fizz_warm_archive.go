//go:build fizzwarm

// The archive form: the first line, then the tar.gz streamed through gunzip and a tar reader into
// <FIZZ_WORKDIR>/fn/ while every byte is hashed. Only regular files and directories under clean
// relative paths are written; the digest is checked before anything is loaded.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

type fizzUnsafe struct{ message string }

func (e *fizzUnsafe) Error() string { return e.message }

func fizzUnsafeEntry(name, why string) error {
	return &fizzUnsafe{fmt.Sprintf("entry %q: %s", name, why)}
}

// fizzBody counts and hashes what is read, and stops past the byte cap.
type fizzBody struct {
	r        io.Reader
	h        hash.Hash
	n, max   int64
	overflow bool
}

var fizzErrTooLarge = errors.New("archive over FIZZ_MAX_PACKAGE_BYTES")

func (b *fizzBody) Read(p []byte) (int, error) {
	if b.overflow {
		return 0, fizzErrTooLarge
	}
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	if b.n > b.max {
		b.overflow = true
		return n, fizzErrTooLarge
	}
	return n, err
}

func (rt *fizzRuntime) specializeArchive(w http.ResponseWriter, r *http.Request) {
	br := bufio.NewReaderSize(r.Body, 64*1024)
	// Every answer before the archive is read closes the connection, after a lingering close
	// (answerUnread) so that it reaches a client still sending the archive.
	invalid := func(field, message string) {
		rt.answerUnread(w, r, 400, fizzErrorBody("VALIDATION_FAILED", field+": "+message, false, field))
	}
	line, err := fizzReadLine(br)
	if err != nil {
		invalid("body", err.Error())
		return
	}
	v, err := fizzParseJSON(line)
	if err != nil {
		invalid("body", "the first line must be JSON")
		return
	}
	spec, err := fizzValidateArchiveLine(v)
	if bad, ok := err.(*fizzInvalid); ok {
		invalid(bad.field, bad.message)
		return
	}
	if spec.archiveFile != "" {
		// The archive is the named file: nothing may follow the line.
		if _, err := br.ReadByte(); err != io.EOF {
			invalid("body", "nothing may follow the line when archiveFile names the archive")
			return
		}
	}
	if rt.misdirected(w, r, spec) || !rt.claim(w, r) {
		return
	}
	workdir, err := rt.ensureWorkdir()
	if err != nil {
		rt.state.Store(fizzStateFailed)
		rt.answerUnread(w, r, 500, fizzErrorBody("INTERNAL", "specialize failed: "+err.Error(), true, ""))
		return
	}
	fn := filepath.Join(workdir, "fn")
	if strings.HasPrefix(spec.archiveFile, fizzPackagePrefix) {
		rt.specializePackage(w, r, spec, workdir, fn)
		return
	}
	if err := os.Mkdir(fn, 0o700); err != nil {
		rt.state.Store(fizzStateWarm) // not ours to remove: something was extracted here before
		rt.answerUnread(w, r, 409, fizzErrorBody("ALREADY_SPECIALIZED", "this instance's fn/ directory already exists; an instance is specialized once", false, ""))
		return
	}
	var src io.Reader = br
	if spec.archiveFile != "" {
		file, err := fizzOpenArchiveFile(workdir, spec.archiveFile)
		if err != nil {
			os.RemoveAll(fn)
			rt.state.Store(fizzStateWarm)
			fizzFieldError(w, 400, "VALIDATION_FAILED", "archiveFile", "archiveFile: "+err.Error())
			return
		}
		defer file.Close()
		src = bufio.NewReaderSize(file, 256*1024)
	}
	body := &fizzBody{r: src, h: sha256.New(), max: rt.maxPkgBytes}
	refusal := fizzExtract(body, fn, rt.maxPkgBytes, rt.maxPkgEntries)
	if refusal != nil && !body.overflow {
		// The rest is still read and hashed: a tampered archive is a digest mismatch, not
		// whatever its damage looks like.
		_, _ = io.Copy(io.Discard, body)
	} else if refusal == nil {
		_, _ = io.Copy(io.Discard, body) // the gzip trailer, padding
	}
	backToWarm := func() {
		os.RemoveAll(fn)
		rt.state.Store(fizzStateWarm)
	}
	if body.overflow {
		backToWarm() // before the answer and its lingering close: the instance is warm again
		rt.answerUnread(w, r, 413, fizzErrorBody("PAYLOAD_TOO_LARGE", fmt.Sprintf("archive over %d bytes (FIZZ_MAX_PACKAGE_BYTES)", rt.maxPkgBytes), false, ""))
		return
	}
	if actual := "sha256:" + hex.EncodeToString(body.h.Sum(nil)); actual != spec.digest {
		backToWarm()
		fizzFieldError(w, 400, "DIGEST_MISMATCH", "digest", fmt.Sprintf("archive hashes to %s, not %s; not loaded", actual, spec.digest))
		return
	}
	if refusal != nil {
		backToWarm()
		var unsafe *fizzUnsafe
		if errors.As(refusal, &unsafe) {
			fizzJSON(w, 400, fizzErrorBody("ARCHIVE_UNSAFE", unsafe.message, false, "archive"))
			return
		}
		fizzLog("specialize failed: %v", refusal)
		fizzError(w, 500, "INTERNAL", "specialize failed: "+refusal.Error(), true)
		return
	}
	rt.handOff(w, r, spec, workdir, fn)
}

// fizzExtract writes the archive's regular files (0600, 0700 when executable by their owner) and
// directories (0700) under dir, never following or creating a link.
func fizzExtract(body io.Reader, dir string, maxBytes, maxEntries int64) error {
	gz, err := gzip.NewReader(body)
	if err != nil {
		return &fizzUnsafe{"archive: not a gzip'd tar (" + err.Error() + ")"}
	}
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	seen := map[string]bool{} // path -> is a directory
	var entries, total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, fizzErrTooLarge) {
				return err
			}
			return &fizzUnsafe{"archive: not a gzip'd tar (" + err.Error() + ")"}
		}
		entries++
		if entries > maxEntries {
			return fizzUnsafeEntry(hdr.Name, fmt.Sprintf("more than %d entries (FIZZ_MAX_PACKAGE_ENTRIES)", maxEntries))
		}
		name, err := fizzCleanName(hdr.Name)
		if err != nil {
			return err
		}
		isDir := false
		switch hdr.Typeflag {
		case tar.TypeDir:
			isDir = true
		case tar.TypeReg, tar.TypeRegA:
		case tar.TypeSymlink:
			return fizzUnsafeEntry(hdr.Name, "symbolic links are not allowed")
		case tar.TypeLink:
			return fizzUnsafeEntry(hdr.Name, "hard links are not allowed")
		case tar.TypeChar, tar.TypeBlock:
			return fizzUnsafeEntry(hdr.Name, "devices are not allowed")
		case tar.TypeFifo:
			return fizzUnsafeEntry(hdr.Name, "FIFOs are not allowed")
		default:
			return fizzUnsafeEntry(hdr.Name, fmt.Sprintf("entry type %q is not allowed", hdr.Typeflag))
		}
		if name == "" {
			if isDir {
				continue // the archive's root, "./"
			}
			return fizzUnsafeEntry(hdr.Name, "a file cannot be the archive's root")
		}
		if wasDir, dup := seen[name]; dup && !(wasDir && isDir) {
			return fizzUnsafeEntry(hdr.Name, "repeats an earlier entry")
		}
		parts := strings.Split(name, "/")
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], "/")
			if wasDir, ok := seen[parent]; ok && !wasDir {
				return fizzUnsafeEntry(hdr.Name, "passes through a file")
			}
		}
		target := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		for i := 1; i < len(parts); i++ {
			seen[strings.Join(parts[:i], "/")] = true
		}
		seen[name] = isDir
		if isDir {
			if err := os.Mkdir(target, 0o700); err != nil && !os.IsExist(err) {
				return err
			}
			continue
		}
		total += hdr.Size
		if total > maxBytes {
			return fizzUnsafeEntry(hdr.Name, fmt.Sprintf("the files are over %d bytes (FIZZ_MAX_PACKAGE_BYTES)", maxBytes))
		}
		mode := os.FileMode(0o600)
		if hdr.Mode&0o100 != 0 {
			mode = 0o700
		}
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, tr, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if errors.Is(err, fizzErrTooLarge) {
				return err
			}
			return &fizzUnsafe{fmt.Sprintf("entry %q: truncated (%v)", hdr.Name, err)}
		}
	}
}

// fizzCleanName turns "./a/b" into "a/b" ("" for the root) and refuses anything that is not a
// clean relative path.
func fizzCleanName(raw string) (string, error) {
	name := strings.TrimSuffix(raw, "/")
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	if name == "." {
		name = ""
	}
	switch {
	case strings.HasPrefix(raw, "/"):
		return "", fizzUnsafeEntry(raw, "absolute paths are not allowed")
	case strings.Contains(raw, "\\"):
		return "", fizzUnsafeEntry(raw, "backslashes are not allowed")
	case strings.ContainsRune(raw, 0):
		return "", fizzUnsafeEntry(raw, "NUL is not allowed")
	}
	if name == "" {
		return "", nil
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fizzUnsafeEntry(raw, "path escapes the archive root")
		}
		if part == "" || part == "." {
			return "", fizzUnsafeEntry(raw, "path is not clean")
		}
	}
	return name, nil
}

// fizzOpenArchiveFile opens the archive the poolkeeper placed in this instance's own work dir (a
// hard link to its cached copy, root's and read-only) and unlinks the name: read once, from the
// descriptor. Never through a link: the name must be a regular file itself. The bytes are hashed as
// they are extracted, from the same reads, so whatever the file holds is checked against the digest.
func fizzOpenArchiveFile(workdir, name string) (*os.File, error) {
	path := filepath.Join(workdir, name)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %v", name, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	// O_NONBLOCK only kept a FIFO planted under the name from blocking the open; regular file
	// reads ignore it.
	_ = os.Remove(path)
	return os.NewFile(uintptr(fd), path), nil
}
