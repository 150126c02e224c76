import { expect } from "chai";
import {
  APP_USER,
  NATS_USERS,
  SERVICE_USERS,
  TIMER_LEADER_BUCKET,
  isUserReplySubject,
  natsPermissions,
  permits,
  redisAclRules,
  serviceInboxPrefix,
  subjectMatches,
  subjects,
} from "@fizz/events";

describe("bus permissions", () => {
  const perms = natsPermissions();
  const s = subjects();
  const canPublish = (user: (typeof NATS_USERS)[number], subject: string) =>
    permits(perms[user].publish, subject);
  const canSubscribe = (user: (typeof NATS_USERS)[number], subject: string) =>
    permits(perms[user].subscribe, subject);

  it("matches subjects the way nats-server does (* one token, > the rest)", () => {
    expect(subjectMatches("a.*.c", "a.b.c")).to.equal(true);
    expect(subjectMatches("a.*", "a.b.c")).to.equal(false);
    expect(subjectMatches("a.>", "a.b.c")).to.equal(true);
    expect(subjectMatches("a.>", "a")).to.equal(false);
    expect(subjectMatches(">", "anything.at.all")).to.equal(true);
  });

  it("does not let the gateway publish any poolkeeper subject", () => {
    for (const subject of [s.poolkeeperRetire, s.poolkeeperSpecialize, s.poolkeeperList])
      expect(canPublish("gateway", subject), subject).to.equal(false);
    expect(canPublish("gateway", s.poolkeeperInstance("died"))).to.equal(false);
  });

  it("lets only the registry publish registry.changed.*", () => {
    for (const user of NATS_USERS) {
      expect(canPublish(user, s.registryChanged("functions")), user).to.equal(user === "registry");
    }
  });

  it("lets only the registry ask the gateways to sync, and only the poolkeeper announce instances", () => {
    for (const user of NATS_USERS) {
      expect(canPublish(user, s.gatewaySync), user).to.equal(user === "registry");
      expect(canPublish(user, s.poolkeeperInstance("ready")), user).to.equal(user === "poolkeeper");
    }
  });

  it("refuses the app user every platform and system subject", () => {
    for (const subject of [
      s.poolkeeperRetire,
      s.registryList,
      s.registryGet,
      s.invoke("default", "hello"),
      "fizz.v1.anything",
      "$JS.API.STREAM.LIST",
      "$KV.fizz_calls.x",
      "$O.bucket.x",
      "$SYS.REQ.SERVER.PING",
      "_INBOX.someone-else",
      `${serviceInboxPrefix("registry")}.reply`,
    ])
      expect(canPublish(APP_USER, subject), subject).to.equal(false);
  });

  it("lets the scheduler and the kubewatcher use their leader locks, and the scheduler no other KV bucket", () => {
    const timerLock = `$KV.${TIMER_LEADER_BUCKET}.leader`;
    expect(canPublish("scheduler", timerLock)).to.equal(true);
    expect(canPublish("scheduler", `$JS.API.DIRECT.GET.KV_${TIMER_LEADER_BUCKET}`)).to.equal(true);
    expect(canPublish("scheduler", `$JS.API.STREAM.CREATE.KV_${TIMER_LEADER_BUCKET}`)).to.equal(
      true,
    );
    expect(canPublish("scheduler", "$KV.fizz_calls.x")).to.equal(false);
    expect(canPublish("scheduler", "$KV.fizz_kubewatcher_leader.leader")).to.equal(false);
    expect(canPublish("kubewatcher", "$KV.fizz_kubewatcher_leader.leader")).to.equal(true);
    for (const user of ["poolkeeper", "registry", APP_USER] as const)
      expect(canPublish(user, timerLock), user).to.equal(false);
  });

  it("lets the app user publish and request on user subjects and read only _INBOX replies", () => {
    expect(canPublish(APP_USER, "orders.created")).to.equal(true);
    expect(canPublish(APP_USER, "demo.greet")).to.equal(true);
    expect(canSubscribe(APP_USER, "_INBOX.abc.1")).to.equal(true);
    expect(canSubscribe(APP_USER, "orders.created")).to.equal(false);
    expect(canSubscribe(APP_USER, s.registryChanged("functions"))).to.equal(false);
    // Services reply to their own inbox prefix, which the app user cannot read.
    for (const u of SERVICE_USERS)
      expect(canSubscribe(APP_USER, `${serviceInboxPrefix(u)}.x`), u).to.equal(false);
    expect(perms[APP_USER].allowResponses).to.equal(true);
  });

  it("lets the gateway subscribe to and answer user subjects for subject triggers", () => {
    expect(canSubscribe("gateway", "orders.created")).to.equal(true);
    expect(canPublish("gateway", "orders.created.reply")).to.equal(true);
    expect(canPublish("gateway", s.schedulerLease)).to.equal(true);
    expect(canPublish("gateway", s.invoke("default", "hello"))).to.equal(true);
  });

  it("gives each service what it sends, and nothing it does not", () => {
    expect(canPublish("scheduler", s.poolkeeperRetire)).to.equal(true);
    expect(canPublish("scheduler", s.registryChanged("functions"))).to.equal(false);
    expect(canPublish("poolkeeper", s.poolkeeperRetire)).to.equal(false);
    expect(canPublish("poolkeeper", s.logs("default", "hello"))).to.equal(true);
    expect(canPublish("kubewatcher", s.invoke("default", "hello"))).to.equal(true);
    expect(canPublish("kubewatcher", s.poolkeeperRetire)).to.equal(false);
    expect(canSubscribe("poolkeeper", s.poolkeeperRetire)).to.equal(true);
    expect(canSubscribe("registry", s.poolkeeperRetire)).to.equal(false);
  });

  it("follows a custom subject prefix", () => {
    const custom = natsPermissions("acme.fizz");
    expect(permits(custom.gateway.publish, "acme.fizz.poolkeeper.retire")).to.equal(false);
    expect(permits(custom[APP_USER].publish, "acme.fizz.registry.list")).to.equal(false);
    expect(permits(custom[APP_USER].publish, "fizz.v1.registry.list")).to.equal(true);
  });

  it("limits every Redis user to the platform's key prefix with no admin commands", () => {
    const rules = redisAclRules("fizz:v1:");
    for (const [user, rule] of Object.entries(rules)) {
      expect(rule, user).to.include("resetkeys ~fizz:v1:*");
      expect(rule, user).to.include("-@dangerous");
    }
    // The poolkeeper reads code from the Object Store and secrets through the registry.
    expect(Object.keys(rules)).to.not.include("poolkeeper");
  });

  it("keeps secret values, build reports and archives from the gateway and the app user", () => {
    const perms = natsPermissions();
    const s = subjects();
    for (const subject of [
      s.registryConfigRead,
      s.registryBuildReport,
      s.buildRequested,
      "$O.fizz_archives.C.abc",
      "$O.fizz_archives.M.sha256-00",
    ]) {
      expect(permits(perms.gateway.publish, subject), `gateway ${subject}`).to.equal(false);
      expect(permits(perms[APP_USER].publish, subject), `app ${subject}`).to.equal(false);
    }
    expect(permits(perms.poolkeeper.publish, s.registryConfigRead)).to.equal(true);
    expect(permits(perms.registry.subscribe, s.registryConfigRead)).to.equal(true);
    for (const user of ["scheduler", "kubewatcher"] as const)
      expect(permits(perms[user].publish, s.registryConfigRead), user).to.equal(false);
    // Nor may the gateway see those requests (it subscribes to `>`).
    expect(permits(perms.gateway.subscribe, s.registryConfigRead)).to.equal(false);
  });

  it("keeps services with JetStream access out of the archive and build streams' API", () => {
    const perms = natsPermissions();
    const apis = [
      "$JS.API.CONSUMER.CREATE.OBJ_fizz_archives.c1.$O.fizz_archives.C.x",
      "$JS.API.CONSUMER.CREATE.OBJ_fizz_archives",
      "$JS.API.STREAM.PURGE.OBJ_fizz_archives",
      "$JS.API.STREAM.DELETE.FIZZ_BUILDS",
      "$JS.API.STREAM.MSG.GET.OBJ_fizz_archives",
      "$JS.API.DIRECT.GET.OBJ_fizz_archives.$O.fizz_archives.M.x",
      "$JS.API.CONSUMER.MSG.NEXT.FIZZ_BUILDS.builder",
    ];
    for (const user of ["gateway", "kubewatcher", "scheduler"] as const)
      for (const api of apis)
        expect(permits(perms[user].publish, api), `${user} ${api}`).to.equal(false);
    // Their own streams stay reachable, and the owners keep theirs.
    expect(permits(perms.gateway.publish, "$JS.API.CONSUMER.CREATE.FIZZ_INVOCATIONS")).to.equal(
      true,
    );
    for (const api of apis) {
      expect(permits(perms.poolkeeper.publish, api), `poolkeeper ${api}`).to.equal(true);
      expect(permits(perms.registry.publish, api), `registry ${api}`).to.equal(true);
    }
  });
});

describe("isUserReplySubject", () => {
  it("lets the gateway answer plain client inboxes and user subjects", () => {
    for (const s of ["_INBOX.abc.1", "orders.reply", "demo"])
      expect(isUserReplySubject(s, "fizz.v1"), s).to.equal(true);
  });

  it("refuses replies into the platform, NATS's system subjects and the services' inboxes", () => {
    for (const s of [
      "fizz.v1",
      "fizz.v1.scheduler.instances.default.f",
      "fizz.v1.invoke.default.f",
      "$JS.API.STREAM.DELETE.FIZZ_INVOCATIONS",
      "$KV.fizz_calls.x",
      "$SYS.REQ.SERVER.PING",
      "_INBOX_registry.abc",
      "_INBOX_gateway.x",
      "",
      "a.*",
      "a.>",
    ])
      expect(isUserReplySubject(s, "fizz.v1"), s).to.equal(false);
  });
});

describe("service inboxes", () => {
  it("keeps the gateway out of other services' replies, while it still answers the registry's sync", () => {
    const gw = natsPermissions("fizz.v1").gateway;
    expect(permits(gw.subscribe, "_INBOX_scheduler.abc")).to.equal(false);
    expect(permits(gw.subscribe, "_INBOX_registry.abc")).to.equal(false);
    expect(permits(gw.subscribe, "_INBOX_gateway.abc")).to.equal(true);
    expect(permits(gw.publish, "_INBOX_registry.abc")).to.equal(true);
  });
});
