// When the Go runtime gives a call's concurrency slot back (docs/runtime-contract.md: free by the
// time the client has the answer): right before the write that completes the answer, which a Go
// handler may do itself and then keep running, or wait on while a slow client reads; exactly
// once, a panic after it included. Concurrency 1: one call runs, one waits, the next gets 429.
import { expect } from "chai";
import { packageArchive } from "../../contract/archive.js";
import { type Runtime, request, specializeArchive } from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";
import { callsDuringSlowRead, callsRightAfter } from "../../contract/slot-probes.js";
import { compile, ensurePrepared, goRuntime } from "./fixtures.js";

const BIG = 16 * 1024 * 1024; // far more than loopback's socket buffers hold for a client not reading

const SLOT = `package main

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var big = bytes.Repeat([]byte("x"), ${BIG})

func Handler(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("kind") {
	case "flushed": // the whole answer out, then more work
		w.Header().Set("Content-Length", "4")
		w.Write([]byte("done"))
		w.(http.Flusher).Flush()
		time.Sleep(1500 * time.Millisecond)
	case "large": // written out by the Write itself, then more work
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
		time.Sleep(1500 * time.Millisecond)
	case "panic-after":
		w.Header().Set("Content-Length", "4")
		w.Write([]byte("done"))
		w.(http.Flusher).Flush()
		panic("after the answer")
	case "panic-large": // a 500 FUNCTION_ERROR answer as large
		panic(strings.Repeat("x", ${BIG}))
	case "slow":
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("slow"))
	default:
		w.Write([]byte("quick"))
	}
}
`;

describe("go runtime: a call's concurrency slot", function () {
  this.timeout(180_000);
  let rt: Runtime;
  before(async function () {
    this.timeout(900_000);
    await ensurePrepared();
    rt = await goRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
    const archive = await packageArchive(await compile({ "slot.go": SLOT }));
    const res = await specializeArchive(rt, archive, { concurrency: 1 });
    expect(res.status, res.text).to.equal(200);
  });
  after(() => rt.kill());

  it("is free once a flushed Content-Length answer is out, while the handler keeps running", async () => {
    const { first, next } = await callsRightAfter(rt, ME, "/?kind=flushed", "/");
    expect(first.text).to.equal("done");
    expect(next).to.deep.equal([200, 200]);
  });

  it("is free once a large answer is written, while the handler keeps running", async () => {
    const { first, next } = await callsRightAfter(rt, ME, "/?kind=large", "/");
    expect(first.body.length).to.equal(BIG);
    expect(next).to.deep.equal([200, 200]);
  });

  it("is free while a large answer's last write waits on a client that does not read yet", async () => {
    const { next, bodyBytes, status } = await callsDuringSlowRead(rt, ME, "/?kind=large", "/");
    expect(next).to.deep.equal([200, 200]);
    expect(status).to.equal("HTTP/1.1 200 OK");
    expect(bodyBytes).to.equal(BIG);
  });

  it("is free while a large FUNCTION_ERROR answer's write waits on a client that does not read yet", async () => {
    const slow = await callsDuringSlowRead(rt, ME, "/?kind=panic-large", "/");
    expect(slow.next).to.deep.equal([200, 200]);
    expect(slow.status).to.equal("HTTP/1.1 500 Internal Server Error");
    expect(slow.bodyBytes).to.be.greaterThan(BIG);
  });

  it("is given back once when the handler panics after its answer: the next calls still meet the limit", async function () {
    // A second give-back blocks on the gate, or takes another call's slot: calls then hang.
    this.timeout(30_000);
    const answer = await request(rt.url, { path: "/?kind=panic-after", headers: ME });
    expect(answer.text).to.equal("done");
    // Three at once: one runs, one waits, one is refused, as long as the slot count is right.
    const call = () => request(rt.url, { path: "/?kind=slow", headers: ME });
    const statuses = (await Promise.all([call(), call(), call()])).map((r) => r.status);
    expect(statuses.sort()).to.deep.equal([200, 200, 429]);
  });
});
