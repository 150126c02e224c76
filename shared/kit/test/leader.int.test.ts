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

  it("a contender with another ttl (a changed setting) sets the bucket's max age to it", async () => {
    await contender("a");
    await contender("b", "scheduler", 2_000);
    const jsm = await jetstreamManager(contenders[0]!.nc);
    expect((await jsm.streams.info(`KV_${TIMER_LEADER_BUCKET}`)).config.max_age).to.equal(
      2_000 * 1_000_000,
    );
  });

  it("the scheduler's user cannot take a lock in a bucket it is not granted", async () => {
    const c = await contender("a", "scheduler", TTL, "fizz_other_leader");
    await new Promise((r) => setTimeout(r, TTL));
    expect(c.election.isLeader()).to.equal(false);
    expect(c.electedAt).to.deep.equal([]);
  });
});
