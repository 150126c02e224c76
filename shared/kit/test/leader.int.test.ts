import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import {
  natsPermissions,
  serviceInboxPrefix,
  TIMER_LEADER_BUCKET,
  type ServiceUser,
} from "@fizz/events";
import { startNats, waitFor, type TestServer } from "@fizz/testkit";
import { LeaderElection } from "../src/leader";
import { silentLogger } from "../src/logger";

const TTL = 1_500;
/** Each service contends in its own bucket; its NATS user is granted that one. */
const BUCKETS: Record<string, string> = {
  scheduler: TIMER_LEADER_BUCKET,
  kubewatcher: "fizz_kubewatcher_leader",
};

interface Contender {
  id: string;
  nc: NatsConnection;
  election: LeaderElection;
  electedAt: number[];
  deposedAt: number[];
}

/** Real nats-server, locked with the platform's own permissions: the services' users must do this. */
describe("LeaderElection on nats-server (integration)", () => {
  let nats: TestServer;
  let contenders: Contender[];
  const perms = natsPermissions();
  const users: ServiceUser[] = ["scheduler", "kubewatcher"];

  const contender = async (
    id: string,
    user: ServiceUser = "scheduler",
    ttlMs = TTL,
    bucket = BUCKETS[user]!,
  ) => {
    const nc = await connect({
      servers: nats.url,
      user,
      pass: `${user}-pw`,
      inboxPrefix: serviceInboxPrefix(user),
      reconnect: false,
    });
    const c: Contender = { id, nc, electedAt: [], deposedAt: [], election: undefined! };
    c.election = new LeaderElection({
      js: jetstream(nc),
      bucket,
      id,
      ttlMs,
      logger: silentLogger(),
      onElected: () => c.electedAt.push(Date.now()),
      onDeposed: () => c.deposedAt.push(Date.now()),
    });
    contenders.push(c);
    await c.election.start();
    return c;
  };
  const leaderOf = (cs: Contender[]) =>
    waitFor(() => cs.find((c) => c.election.isLeader()), { timeoutMs: 5000, what: "a leader" });

  beforeEach(async () => {
    contenders = [];
    nats = await startNats({
      users: users.map((u) => ({ user: u, password: `${u}-pw`, permissions: perms[u] })),
    });
  });
  afterEach(async () => {
    for (const c of contenders) {
      await c.election.stop();
      await c.nc.close().catch(() => undefined);
    }
    await nats.cleanup();
  });

  it("of two contenders, exactly one leads, through several renewals", async () => {
    const a = await contender("a");
    const b = await contender("b");
    const leader = await leaderOf([a, b]);
    const deadline = Date.now() + 2 * TTL;
    while (Date.now() < deadline) {
      expect([a, b].filter((c) => c.election.isLeader())).to.deep.equal([leader]);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(leader.deposedAt).to.deep.equal([]);
  });

  it("when the leader stops gracefully, the other takes over within ttl/4, not after the ttl", async () => {
    const a = await contender("a", "kubewatcher");
    const b = await contender("b", "kubewatcher");
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;
    const stoppedAt = Date.now();
    await leader.election.stop();
    await waitFor(() => follower.election.isLeader(), { timeoutMs: TTL, what: "takeover" });
    expect(follower.electedAt[0]! - stoppedAt).to.be.below(TTL / 4 + 300);
  });

  it("when the leader's connection dies, it steps down before the follower takes over after the ttl", async () => {
    const a = await contender("a");
    const b = await contender("b");
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;
    const closedAt = Date.now();
    await leader.nc.close();
    await waitFor(() => follower.election.isLeader(), { timeoutMs: 3 * TTL, what: "takeover" });
    const elected = follower.electedAt[0]!;
    expect(leader.deposedAt, "the old leader stepped down").to.have.length(1);
    expect(leader.deposedAt[0]).to.be.at.most(elected);
    expect(leader.election.isLeader()).to.equal(false);
    // The key outlives the last renewal by the ttl; the follower polls every ttl/4.
    expect(elected - closedAt).to.be.within(TTL / 2, TTL + TTL / 4 + 500);
  });

  const bucketConfig = async (bucket = TIMER_LEADER_BUCKET) => {
    const jsm = await jetstreamManager(contenders[0]!.nc);
    const { max_age, duplicate_window } = (await jsm.streams.info(`KV_${bucket}`)).config;
    return { maxAgeMs: max_age / 1_000_000, duplicateWindowMs: duplicate_window / 1_000_000 };
  };

  it("a new bucket's max age is the ttl, its duplicate window no longer", async () => {
    await contender("a");
    const { maxAgeMs, duplicateWindowMs } = await bucketConfig();
    expect(maxAgeMs).to.equal(TTL);
    expect(duplicateWindowMs).to.be.at.most(TTL);
  });

  it("a contender with a longer ttl (a changed setting) raises the bucket's max age to it", async () => {
    await contender("a");
    await contender("b", "scheduler", 2_000);
    const { maxAgeMs, duplicateWindowMs } = await bucketConfig();
    expect(maxAgeMs).to.equal(2_000);
    expect(duplicateWindowMs).to.be.at.most(2_000);
  });

  it("a contender with a shorter ttl (a rollout lowering it) starts, leaves the max age, and exactly one leads", async () => {
    const a = await contender("a", "scheduler", 10_000);
    // Before: the update to a 5 s max age kept the 10 s duplicate window and nats-server refused
    // it, so this start failed on every retry.
    const b = await contender("b", "scheduler", 5_000);
    expect(await bucketConfig()).to.deep.equal({ maxAgeMs: 10_000, duplicateWindowMs: 10_000 });
    const leader = await leaderOf([a, b]);
    const deadline = Date.now() + 3_000; // past b's poll interval (ttl/4) several times
    while (Date.now() < deadline) {
      expect([a, b].filter((c) => c.election.isLeader())).to.deep.equal([leader]);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(leader.deposedAt).to.deep.equal([]);
  });

  it("the short-ttl contender leads safely: the key outlives its validity by the bucket's max age", async () => {
    const a = await contender("a", "kubewatcher", 4_000);
    await a.election.stop();
    const b = await contender("b", "kubewatcher", TTL);
    const c = await contender("c", "kubewatcher", TTL);
    const leader = await leaderOf([b, c]);
    const follower = leader === b ? c : b;
    const closedAt = Date.now();
    await leader.nc.close();
    await waitFor(() => follower.election.isLeader(), { timeoutMs: 4 * 4_000, what: "takeover" });
    // The old leader stepped down at 4/5 of its own ttl; the key lived the bucket's 4 s.
    expect(leader.deposedAt[0]! - closedAt).to.be.below(TTL);
    expect(follower.electedAt[0]! - closedAt).to.be.within(4_000 - TTL / 4, 4_000 + TTL / 4 + 500);
  });

  it("the scheduler's user cannot take a lock in a bucket it is not granted", async () => {
    const c = await contender("a", "scheduler", TTL, "fizz_other_leader");
    await new Promise((r) => setTimeout(r, TTL));
    expect(c.election.isLeader()).to.equal(false);
    expect(c.electedAt).to.deep.equal([]);
  });
});
