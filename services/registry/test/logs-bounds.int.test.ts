import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import express from "express";
import { subjects } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { startNats, waitFor, type TestServer } from "@fizz/testkit";
import { FunctionLogs } from "../src/logs-http";
import type { Operations } from "../src/operations";
import { LogClient, LogPublisher } from "./logs-support";

/**
 * The endpoint's bounds with short timings: keep-alive lines and a client that stops reading.
 * Real nats-server and HTTP; only the function lookup is faked (every function exists).
 */
describe("function logs: keep-alive and slow clients", function () {
  this.timeout(120_000);
  let nats: TestServer;
  let nc: NatsConnection;
  let pub: LogPublisher;
  let server: http.Server;
  let port: number;
  let logs: FunctionLogs;
  /** The function lookup; a test may hold it to act meanwhile. */
  let lookup: () => Promise<unknown> = () => Promise.resolve({});
  /** Requests the endpoint has finished with. */
  let finished = 0;

  before(async () => {
    nats = await startNats();
    pub = await LogPublisher.open(nats.url);
    nc = await connectNats({ url: nats.url, name: "test-registry", logger: silentLogger() });
    logs = new FunctionLogs({
      nc: () => nc,
      subjects: subjects(),
      config: { logFollowsMax: 8 },
      logger: silentLogger(),
      heartbeatMs: 1000,
      slowClientMs: 1500,
    });
    const everyFunction = { get: () => lookup() } as unknown as Operations;
    const app = express();
    // What the registry's authenticate() leaves for the admin token (the endpoint checks it).
    app.use((_req, res, next) => {
      res.locals.role = "admin";
      next();
    });
    const handler = logs.handler(() => everyFunction);
    app.get("/v1/namespaces/:ns/functions/:name/logs", async (req, res, next) => {
      try {
        await handler(req, res, next);
      } finally {
        finished++;
      }
    });
    server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    logs?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await nc?.close();
    await pub?.close();
    await nats?.cleanup();
  });

  it("sends an empty keep-alive line while a follow has nothing new", async () => {
    const c = await LogClient.open(port, "/v1/namespaces/default/functions/quiet/logs?follow=true");
    try {
      await waitFor(() => c.blanks >= 2, { what: "two keep-alive lines", timeoutMs: 30_000 });
      expect(c.lines).to.deep.equal([]);
    } finally {
      c.close();
    }
  });

  it("ends open follows cleanly when the registry stops, so clients reconnect elsewhere", async () => {
    const c = await LogClient.open(port, "/v1/namespaces/default/functions/quiet/logs?follow=true");
    expect(c.status).to.equal(200);
    logs.close();
    await waitFor(() => c.ended, { what: "the follow's answer ended" });
    await waitFor(async () => (await pub.consumers()) === 0, { what: "its consumer removed" });
  });

  it("ends a follow whose client left while the function was being looked up, holding no consumer", async () => {
    let release!: () => void;
    let asked = false;
    lookup = () => {
      asked = true;
      return new Promise((resolve) => (release = () => resolve({})));
    };
    const before = finished;
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    socket.write(
      "GET /v1/namespaces/default/functions/gone/logs?follow=true HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    try {
      await waitFor(() => asked, { what: "the lookup" });
      socket.destroy();
      await waitFor(
        () => new Promise<boolean>((resolve) => server.getConnections((_e, n) => resolve(n === 0))),
        { what: "the server to see the client gone" },
      );
      release();
      await waitFor(() => finished === before + 1, { what: "the endpoint done with the request" });
      expect(await pub.consumers()).to.equal(0);
    } finally {
      lookup = () => Promise.resolve({});
      socket.destroy();
    }
  });

  it("drops a client that stops reading instead of buffering for it, and removes its consumer", async () => {
    const big = "x".repeat(8000);
    await pub.publish(
      "flood",
      Array.from({ length: 1500 }, (_, i) => `${i} ${big}`),
    );
    // A client that sends the request and then never reads a byte.
    const socket = net.connect(port, "127.0.0.1");
    socket.pause();
    let closed = false;
    socket.on("close", () => (closed = true));
    socket.on("error", () => undefined);
    socket.write(
      "GET /v1/namespaces/default/functions/flood/logs?follow=true&tail=1500 HTTP/1.1\r\n" +
        "Host: x\r\n\r\n",
    );
    try {
      await waitFor(async () => (await pub.consumers()) === 1, { what: "the follow's consumer" });
      await waitFor(async () => (await pub.consumers()) === 0, {
        what: "the slow client dropped",
        timeoutMs: 60_000,
      });
      socket.resume();
      await waitFor(() => closed, { what: "the connection closed", timeoutMs: 30_000 });
    } finally {
      socket.destroy();
    }
  });
});
