//go:build fizzwarm

// Specialize, both forms: the order of checks (token, 409, body, 421, digest), the validation of
// the body, and the JSON form's refusal to load Go source (the builder compiles Go).
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

const (
	fizzArchiveContentType = "application/vnd.fizz.specialize+tar"
	fizzMaxLineBytes       = 4 * 1024 * 1024
	fizzMaxConcurrency     = 10000
	// docs/api.md: the environment's default per-instance concurrency.
	fizzDefaultConcurrency = 50
)

var (
	fizzFilenameRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.go$`)
	fizzEntrypointRe = regexp.MustCompile(`^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*\.)?[A-Za-z_][A-Za-z0-9_]*$`)
	fizzPkgEntryRe   = regexp.MustCompile(`^(?:[A-Za-z0-9_][A-Za-z0-9_./-]*\.)?[A-Za-z_][A-Za-z0-9_]*$`)
	fizzConfigNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	fizzConfigKeyRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)
	fizzEnvNameRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	fizzDigestRe     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// One name directly in the work dir, never a path: nothing outside it can be named. The
	// archive (a file), or the package the poolkeeper already extracted (a directory).
	fizzArchiveFileRe = regexp.MustCompile(`^\.fizz-(?:archive|package)-[0-9a-f]{32}$`)
	fizzBase64Re      = regexp.MustCompile(`^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`)
)

type fizzSpec struct {
	instanceID  string
	function    fizzFunctionRef
	entrypoint  string
	concurrency int
	env         map[string]string
	secrets     map[string]map[string][]byte
	configmaps  map[string]map[string][]byte
	digest      string
	filename    string
	code        []byte
	archiveFile string // the archive form's private copy in the work dir, instead of a body
}

type fizzInvalid struct{ field, message string }

func (e *fizzInvalid) Error() string { return e.field + ": " + e.message }

func fizzBad(field, message string) error { return &fizzInvalid{field, message} }

func fizzIsInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(string(n), ".eE") {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

func fizzParseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

// fizzValidateCommon checks the fields both forms share.
func fizzValidateCommon(v any, entryRe *regexp.Regexp) (*fizzSpec, error) {
	body, ok := v.(map[string]any)
	if !ok {
		return nil, fizzBad("body", "must be a JSON object")
	}
	spec := &fizzSpec{concurrency: fizzDefaultConcurrency, env: map[string]string{}}
	if id, present := body["instanceId"]; present && id != nil {
		s, ok := id.(string)
		if !ok || s == "" {
			return nil, fizzBad("instanceId", "must be a non-empty string")
		}
		spec.instanceID = s
	}
	fn, ok := body["function"].(map[string]any)
	if !ok {
		return nil, fizzBad("function", "must be an object {namespace, name, revision}")
	}
	for _, key := range []string{"namespace", "name"} {
		if s, ok := fn[key].(string); !ok || s == "" {
			return nil, fizzBad("function."+key, "must be a non-empty string")
		}
	}
	spec.function.Namespace, spec.function.Name = fn["namespace"].(string), fn["name"].(string)
	if !fizzConfigNameRe.MatchString(spec.function.Namespace) {
		return nil, fizzBad("function.namespace", "must be a namespace name")
	}
	rev, ok := fizzIsInt(fn["revision"])
	if !ok || rev < 0 {
		return nil, fizzBad("function.revision", "must be a non-negative integer")
	}
	spec.function.Revision = rev
	if ep, present := body["entrypoint"]; present && ep != nil && ep != "" {
		s, ok := ep.(string)
		if !ok || !entryRe.MatchString(s) {
			return nil, fizzBad("entrypoint", "must be 'Fn' or 'file.Fn'")
		}
		spec.entrypoint = s
	}
	if c, present := body["concurrency"]; present && c != nil {
		n, ok := fizzIsInt(c)
		if !ok || n < 1 || n > fizzMaxConcurrency {
			return nil, fizzBad("concurrency", fmt.Sprintf("must be an integer between 1 and %d", fizzMaxConcurrency))
		}
		spec.concurrency = int(n)
	}
	if e, present := body["env"]; present && e != nil {
		env, ok := e.(map[string]any)
		if !ok {
			return nil, fizzBad("env", "must be an object of strings")
		}
		for k, val := range env {
			if !fizzEnvNameRe.MatchString(k) {
				return nil, fizzBad("env."+k, "is not a valid variable name")
			}
			s, ok := val.(string)
			if !ok {
				return nil, fizzBad("env."+k, "must be a string")
			}
			spec.env[k] = s
		}
	}
	var err error
	if spec.secrets, err = fizzConfigData(body["secrets"], "secrets"); err != nil {
		return nil, err
	}
	if spec.configmaps, err = fizzConfigData(body["configmaps"], "configmaps"); err != nil {
		return nil, err
	}
	return spec, nil
}

// fizzConfigData reads {name: {key: base64}}. Messages name the field, never a value.
func fizzConfigData(v any, field string) (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	if v == nil {
		return out, nil
	}
	data, ok := v.(map[string]any)
	if !ok {
		return nil, fizzBad(field, "must be an object {name: {key: base64}}")
	}
	for name, keys := range data {
		if !fizzConfigNameRe.MatchString(name) {
			return nil, fizzBad(field+"."+name, "is not a valid name")
		}
		m, ok := keys.(map[string]any)
		if !ok {
			return nil, fizzBad(field+"."+name, "must be an object {key: base64}")
		}
		values := map[string][]byte{}
		for key, value := range m {
			f := field + "." + name + "." + key
			if !fizzConfigKeyRe.MatchString(key) || key == "." || key == ".." {
				return nil, fizzBad(f, "is not a valid key (letters, digits, '-', '_', '.')")
			}
			s, ok := value.(string)
			if !ok || !fizzBase64Re.MatchString(s) {
				return nil, fizzBad(f, "must be base64")
			}
			decoded, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fizzBad(f, "must be base64")
			}
			values[key] = decoded
		}
		out[name] = values
	}
	return out, nil
}

func (rt *fizzRuntime) specialize(w http.ResponseWriter, r *http.Request) {
	if !rt.authorized(r.Header.Values("X-Fizz-Specialize-Token")) {
		rt.answerUnread(w, r, 401, fizzUnauthenticated)
		return
	}
	if rt.refusal(w, r) {
		return
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == fizzArchiveContentType {
		rt.specializeArchive(w, r)
		return
	}
	rt.specializeJSON(w, r)
}

func (rt *fizzRuntime) misdirected(w http.ResponseWriter, r *http.Request, spec *fizzSpec) bool {
	if spec.instanceID != "" && rt.instanceID != "" && spec.instanceID != rt.instanceID {
		message := fmt.Sprintf("this is instance %s, not %s", rt.instanceID, spec.instanceID)
		rt.answerUnread(w, r, 421, fizzErrorBody("MISDIRECTED", message, true, ""))
		return true
	}
	return false
}

// claim moves warm -> specializing, or answers the 409 when another specialize got there first.
func (rt *fizzRuntime) claim(w http.ResponseWriter, r *http.Request) bool {
	if rt.state.CompareAndSwap(fizzStateWarm, fizzStateSpecializing) {
		return true
	}
	rt.refusal(w, r)
	return false
}

// specializeJSON: every check that comes before loading, then the refusal: a Go function is a
// package the builder compiled, never a source file loaded here.
func (rt *fizzRuntime) specializeJSON(w http.ResponseWriter, r *http.Request) {
	tooLarge := fizzErrorBody("PAYLOAD_TOO_LARGE", fmt.Sprintf("specialize body over %d bytes (FIZZ_MAX_BODY_BYTES)", rt.maxBody), false, "")
	if r.ContentLength > rt.maxBody {
		rt.answerUnread(w, r, 413, tooLarge)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, rt.maxBody+1))
	if err == nil && int64(len(raw)) > rt.maxBody {
		rt.answerUnread(w, r, 413, tooLarge)
		return
	}
	v, perr := fizzParseJSON(raw)
	if err != nil || perr != nil {
		fizzFieldError(w, 400, "VALIDATION_FAILED", "body", "must be JSON")
		return
	}
	spec, err := fizzValidateCommon(v, fizzEntrypointRe)
	if err == nil {
		err = fizzValidateSingle(v.(map[string]any), spec)
	}
	if bad, ok := err.(*fizzInvalid); ok {
		fizzFieldError(w, 400, "VALIDATION_FAILED", bad.field, bad.message)
		return
	}
	if spec.digest != "" {
		sum := sha256.Sum256(spec.code)
		if actual := "sha256:" + hex.EncodeToString(sum[:]); actual != spec.digest {
			fizzFieldError(w, 400, "DIGEST_MISMATCH", "digest", fmt.Sprintf("code hashes to %s, not %s; not loaded", actual, spec.digest))
			return
		}
	}
	if rt.misdirected(w, r, spec) || !rt.claim(w, r) {
		return
	}
	// Written where the stack traces of other languages point, for whoever inspects the instance.
	if dir, err := rt.ensureWorkdir(); err == nil {
		_ = os.WriteFile(filepath.Join(dir, spec.filename), spec.code, 0o600)
	}
	rt.state.Store(fizzStateFailed)
	msg := spec.filename + ": Go functions are compiled by the builder; deploy the source as a package (fizz fn create --src, or --code, which the CLI sends as a one-file package)"
	fizzLog("%s/%s@%d failed to load: %s", spec.function.Namespace, spec.function.Name, spec.function.Revision, msg)
	fizzError(w, 500, "FUNCTION_LOAD_FAILED", msg, false)
}

func fizzValidateSingle(body map[string]any, spec *fizzSpec) error {
	filename, ok := body["filename"].(string)
	if !ok || !fizzFilenameRe.MatchString(filename) {
		return fizzBad("filename", "must be a file name (no directory) ending in .go")
	}
	code, ok := body["code"].(string)
	if !ok || !fizzBase64Re.MatchString(code) {
		return fizzBad("code", "must be the file's content in base64")
	}
	decoded, err := base64.StdEncoding.DecodeString(code)
	if err != nil {
		return fizzBad("code", "must be the file's content in base64")
	}
	if d, present := body["digest"]; present && d != nil {
		s, ok := d.(string)
		if !ok || !fizzDigestRe.MatchString(s) {
			return fizzBad("digest", "must be sha256:<64 lowercase hex digits>")
		}
		spec.digest = s
	}
	spec.filename, spec.code = filename, decoded
	return nil
}

func fizzValidateArchiveLine(v any) (*fizzSpec, error) {
	spec, err := fizzValidateCommon(v, fizzPkgEntryRe)
	if err != nil {
		return nil, err
	}
	body := v.(map[string]any)
	if _, present := body["code"]; present {
		return nil, fizzBad("code", "not allowed: the code is the archive that follows")
	}
	if _, present := body["filename"]; present {
		return nil, fizzBad("filename", "not allowed with an archive")
	}
	d, ok := body["digest"].(string)
	if !ok || !fizzDigestRe.MatchString(d) {
		return nil, fizzBad("digest", "is required: sha256:<64 lowercase hex digits> of the archive")
	}
	spec.digest = d
	if f, present := body["archiveFile"]; present {
		name, ok := f.(string)
		if !ok || !fizzArchiveFileRe.MatchString(name) {
			return nil, fizzBad("archiveFile", "must be the name the poolkeeper gave the archive in this instance's work dir")
		}
		spec.archiveFile = name
	}
	if i := strings.LastIndexByte(spec.entrypoint, '.'); i >= 0 {
		for _, part := range strings.Split(spec.entrypoint[:i], "/") {
			if part == "" || part == "." || part == ".." {
				return nil, fizzBad("entrypoint", "must name a file inside the package")
			}
		}
	}
	return spec, nil
}

// readLine reads the archive form's first line: at most fizzMaxLineBytes, ended by '\n'.
func fizzReadLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > fizzMaxLineBytes+1 {
			return nil, fmt.Errorf("the first line is over %d bytes", fizzMaxLineBytes)
		}
		if err == nil {
			return line[:len(line)-1], nil
		}
		if err != bufio.ErrBufferFull {
			return nil, fmt.Errorf("the body must start with one line of JSON ended by a newline")
		}
	}
}

func (rt *fizzRuntime) ensureWorkdir() (string, error) {
	if rt.workdir == "" {
		dir, err := os.MkdirTemp("", "fizz-fn-")
		if err != nil {
			return "", err
		}
		rt.workdir = dir
	}
	return rt.workdir, os.MkdirAll(rt.workdir, 0o700)
}
