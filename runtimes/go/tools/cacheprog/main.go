// fizz-go-cacheprog: the Go build cache of one build (GOCACHEPROG, Go 1.24+), for
// runtimes/go/build.sh.
//
// Gets are answered from the build's private directory (FIZZ_GOCACHE_DIR), then from a read-only
// seed (FIZZ_GOCACHE_SEED: the standard library and the runtime's own packages, compiled once by
// prepare.mjs as root). Puts go to the private directory only. So a build starts warm (net/http
// is not recompiled: ~27 s on a small machine) while no build can write anything another tenant's
// build will read: a shared writable GOCACHE would let one function's build poison another's
// compiled packages, which is code execution in the other tenant's function.
//
// Layout of both directories: a/<xx>/<action hex> holds "<output hex> <size> <unix ns>", and
// o/<xx>/<output hex> the output's bytes.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type request struct {
	ID       int64
	Command  string
	ActionID []byte `json:",omitempty"`
	OutputID []byte `json:",omitempty"`
	BodySize int64  `json:",omitempty"`
}

type response struct {
	ID            int64
	Err           string     `json:",omitempty"`
	KnownCommands []string   `json:",omitempty"`
	Miss          bool       `json:",omitempty"`
	OutputID      []byte     `json:",omitempty"`
	Size          int64      `json:",omitempty"`
	Time          *time.Time `json:",omitempty"`
	DiskPath      string     `json:",omitempty"`
}

func main() {
	private := os.Getenv("FIZZ_GOCACHE_DIR")
	if private == "" {
		fmt.Fprintln(os.Stderr, "fizz-go-cacheprog: FIZZ_GOCACHE_DIR is not set")
		os.Exit(2)
	}
	private, _ = filepath.Abs(private)
	dirs := []string{private}
	if seed := os.Getenv("FIZZ_GOCACHE_SEED"); seed != "" {
		if abs, err := filepath.Abs(seed); err == nil {
			dirs = append(dirs, abs)
		}
	}
	in := json.NewDecoder(bufio.NewReaderSize(os.Stdin, 1<<20))
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	send := func(r response) {
		_ = enc.Encode(r)
		_ = out.Flush()
	}
	send(response{KnownCommands: []string{"get", "put", "close"}})
	for {
		var req request
		if err := in.Decode(&req); err != nil {
			if err != io.EOF {
				fmt.Fprintln(os.Stderr, "fizz-go-cacheprog:", err)
			}
			return
		}
		switch req.Command {
		case "get":
			send(get(dirs, req))
		case "put":
			var body []byte
			if req.BodySize > 0 {
				if err := in.Decode(&body); err != nil {
					fmt.Fprintln(os.Stderr, "fizz-go-cacheprog: put body:", err)
					return
				}
			}
			send(put(private, req, body))
		case "close":
			send(response{ID: req.ID})
			return
		default:
			send(response{ID: req.ID, Err: "unknown command " + req.Command})
		}
	}
}

func paths(dir string, action, output string) (string, string) {
	a := filepath.Join(dir, "a", action[:2], action)
	if output == "" {
		return a, ""
	}
	return a, filepath.Join(dir, "o", output[:2], output)
}

func get(dirs []string, req request) response {
	action := hex.EncodeToString(req.ActionID)
	if len(action) < 2 {
		return response{ID: req.ID, Miss: true}
	}
	for _, dir := range dirs {
		a, _ := paths(dir, action, "")
		data, err := os.ReadFile(a)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data))
		if len(fields) != 3 || len(fields[0]) < 2 {
			continue
		}
		outputID, err1 := hex.DecodeString(fields[0])
		size, err2 := strconv.ParseInt(fields[1], 10, 64)
		ns, err3 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		_, o := paths(dir, action, fields[0])
		if info, err := os.Stat(o); err != nil || info.Size() != size {
			continue
		}
		t := time.Unix(0, ns)
		return response{ID: req.ID, OutputID: outputID, Size: size, Time: &t, DiskPath: o}
	}
	return response{ID: req.ID, Miss: true}
}

func put(dir string, req request, body []byte) response {
	action, output := hex.EncodeToString(req.ActionID), hex.EncodeToString(req.OutputID)
	if len(action) < 2 || len(output) < 2 || int64(len(body)) != req.BodySize {
		return response{ID: req.ID, Err: "malformed put"}
	}
	a, o := paths(dir, action, output)
	if err := writeAtomic(o, body); err != nil {
		return response{ID: req.ID, Err: err.Error()}
	}
	line := fmt.Sprintf("%s %d %d\n", output, len(body), time.Now().UnixNano())
	if err := writeAtomic(a, []byte(line)); err != nil {
		return response{ID: req.ID, Err: err.Error()}
	}
	return response{ID: req.ID, DiskPath: o}
}

// writeAtomic: readers (other go processes of the same build) never see half a file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
