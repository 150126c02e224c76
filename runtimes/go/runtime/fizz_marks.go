// Call markers (shared/events/src/logs.ts): the line `\x1b_fizz:call=<id>\x1b\\` on stdout and
// stderr tells the platform's log capturer that the lines after it belong to request <id>, and
// `\x1b_fizz:call=\x1b\\` that they no longer do.
//
// A Go function writes straight to fd 1 and 2 (fmt.Println, log, os.Stdout.Write) from any
// goroutine, so a write cannot be traced back to a call. What can be known is how many calls are
// running: while exactly one runs, what is printed is that call's (or a background goroutine's,
// which Go cannot tell apart). So a call that starts alone marks both streams with its request
// id, and clears them when it ends; a second call starting alongside it clears them, and no call
// is marked until the instance is idle again. Lines printed while calls overlap carry no request
// id: untagged rather than mistagged. The cost is four small writes per call that starts alone
// (none for overlapping calls, or without a request id); the alternative, fd 1 and 2 redirected
// through a pipe this process reads, would double every write the function makes and lose the
// last lines of a process that dies (log.Fatal, os.Exit, a crash) before it read them.
package main

import (
	"fmt"
	"os"
	"sync"
)

const (
	fizzMarkPrefix = "\x1b_fizz:call="
	fizzMarkSuffix = "\x1b\\\n"
)

// The streams the markers go to, as the process started: a function that reassigns os.Stdout
// changes where its own output goes, not fd 1.
var fizzStdout, fizzStderr = os.Stdout, os.Stderr

// fizzMarks is the marker state of both streams: which call (by sequence number, 0 = none) they
// are marked with, and how many calls are running. Its lock orders marker writes against each
// other and against the runtime's own messages.
type fizzMarks struct {
	mu       sync.Mutex
	inFlight int
	seq      uint64
	marked   uint64
	markedID string
}

var fizzMarker fizzMarks

// fizzMarkable: the gateway's request id, when it is a token the capturer accepts (a made-up or
// odd id is never marked).
func fizzMarkable(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func fizzMarkLine(id string) string { return fizzMarkPrefix + id + fizzMarkSuffix }

func (m *fizzMarks) both(line string) {
	_, _ = fizzStdout.WriteString(line)
	_, _ = fizzStderr.WriteString(line)
}

// begin is called as a call starts, before its handler runs; id is its markable request id or "".
// It returns the call's sequence number, for end.
func (m *fizzMarks) begin(id string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.inFlight++
	if m.marked != 0 {
		m.both(fizzMarkLine(""))
		m.marked, m.markedID = 0, ""
	} else if m.inFlight == 1 && id != "" {
		m.both(fizzMarkLine(id))
		m.marked, m.markedID = m.seq, id
	}
	return m.seq
}

func (m *fizzMarks) end(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inFlight--
	if m.marked == seq {
		m.both(fizzMarkLine(""))
		m.marked, m.markedID = 0, ""
	}
}

// callLog writes the runtime's message about a call (its panic) on stderr tagged with that call:
// as it is when the streams are marked with it, else between its marker and a clear, in one
// write so that no other line falls in between.
func (m *fizzMarks) callLog(seq uint64, id, text string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.marked == seq || id == "":
		_, _ = fizzStderr.WriteString(text)
	case m.marked == 0:
		_, _ = fizzStderr.WriteString(fizzMarkLine(id) + text + fizzMarkLine(""))
	default: // unreachable: a marked call means no other call runs
		_, _ = fizzStderr.WriteString(text)
	}
}

// log writes a message of the runtime's own on stderr, never tagged with the call that happens to
// be marked.
func (m *fizzMarks) log(text string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.marked != 0 {
		text = fizzMarkLine("") + text + fizzMarkLine(m.markedID)
	}
	_, _ = fizzStderr.WriteString(text)
}

func fizzLog(format string, args ...any) {
	fizzMarker.log(fmt.Sprintf("[fizz] "+format+"\n", args...))
}
