import { expect } from "chai";
import { apiError, apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const WATCHES = "/v1/namespaces/default/watchtriggers";
const ALL = ["ADDED", "MODIFIED", "DELETED"];

describe("fizz watch", () => {
  let registry: FakeServer;

  before(async () => {
    registry = await FakeServer.start();
  });
  afterEach(() => registry.reset());
  after(() => registry.close());

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });
  const watch = (name: string, spec: object, opts: { namespace?: string } = {}) =>
    apiObject(
      "watchtriggers",
      name,
      {
        function: "audit",
        namespace: opts.namespace ?? "default",
        resource: "pods",
        events: ALL,
        ...spec,
      },
      opts,
    );

  it("create watches the trigger's own namespace by default and sends selectors and events", async () => {
    registry.on("POST", WATCHES, {
      status: 201,
      json: watch("web", { labels: "app=web", events: ["ADDED", "DELETED"] }),
    });

    const result = await cli(
      "watch",
      "create",
      "--name",
      "web",
      "--function",
      "audit",
      "--type",
      "pods",
      "--labels",
      "app=web",
      "--fields",
      "status.phase=Running",
      "--events",
      "added,DELETED",
    );

    expect(result.code, result.stderr).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({
      name: "web",
      spec: {
        function: "audit",
        resource: "pods",
        namespace: "default",
        labels: "app=web",
        fields: "status.phase=Running",
        events: ["ADDED", "DELETED"],
      },
    });
    expect(result.stdout).to.equal(
      'watch "web" created: pods in namespace "default" with labels app=web -> audit\n',
    );
  });

  it("create --namespace NS makes the trigger live in NS and watch NS", async () => {
    registry.on("POST", "/v1/namespaces/team-a/watchtriggers", {
      status: 201,
      json: watch("svc", { resource: "services" }, { namespace: "team-a" }),
    });

    const result = await cli(
      "watch",
      "create",
      "--namespace",
      "team-a",
      "--name",
      "svc",
      "--function",
      "audit",
      "--type",
      "services",
    );

    expect(result.code, result.stderr).to.equal(0);
    expect(registry.calls()).to.deep.equal(["POST /v1/namespaces/team-a/watchtriggers"]);
    expect(registry.jsonBody(0)).to.deep.include({
      spec: { function: "audit", resource: "services", namespace: "team-a" },
    });
  });

  it("create --watch-namespace watches another namespace; the registry's refusal is shown as is", async () => {
    registry.on("POST", WATCHES, {
      status: 400,
      json: apiError(
        "VALIDATION_FAILED",
        "spec.namespace: a watch trigger may only watch its own namespace (default); cross-namespace watches need FIZZ_WATCH_CLUSTER_SCOPE=true on the registry",
        "spec.namespace",
      ),
    });

    const result = await cli(
      "watch",
      "create",
      "--name",
      "sys",
      "--function",
      "audit",
      "--type",
      "pods",
      "--watch-namespace",
      "kube-system",
    );

    expect(registry.jsonBody(0)).to.deep.include({
      spec: { function: "audit", resource: "pods", namespace: "kube-system" },
    });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal(
      "Error: spec.namespace: a watch trigger may only watch its own namespace (default); cross-namespace watches need FIZZ_WATCH_CLUSTER_SCOPE=true on the registry (VALIDATION_FAILED)\n",
    );
  });

  it("create refuses an unknown event and a missing --type before sending anything", async () => {
    const badEvent = await cli(
      "watch",
      "create",
      "--name",
      "w",
      "--function",
      "f",
      "--type",
      "pods",
      "--events",
      "CREATED",
    );
    const noType = await cli("watch", "create", "--name", "w", "--function", "f");

    expect(badEvent.code).to.equal(2);
    expect(badEvent.stderr).to.include('"CREATED" is not one of ADDED, MODIFIED, DELETED');
    expect(noType.code).to.equal(2);
    expect(noType.stderr).to.include("--type");
    expect(registry.requests).to.have.length(0);
  });

  it("list shows the watched namespace, resource, labels and events (* for all)", async () => {
    registry.on("GET", `${WATCHES}?limit=500`, {
      json: {
        items: [
          watch("all-pods", {}),
          watch(
            "web",
            { resource: "deployments.apps", labels: "app=web", events: ["DELETED"] },
            {},
          ),
        ],
      },
    });

    const result = await cli("watch", "list");

    expect(result.stdout.split("\n")).to.deep.equal([
      "NAME       FUNCTION   RESOURCE           WATCHED NAMESPACE   LABELS    EVENTS    REVISION   AGE",
      "all-pods   audit      pods               default             -         *         1          5m",
      "web        audit      deployments.apps   default             app=web   DELETED   1          5m",
      "",
    ]);
  });

  it("get shows selectors and events", async () => {
    registry.on("GET", `${WATCHES}/web`, {
      json: watch("web", { fields: "status.phase=Running" }),
    });

    const result = await cli("watch", "get", "--name", "web");

    expect(result.stdout).to.include("Watched namespace: default\n");
    expect(result.stdout).to.include("Field selector:    status.phase=Running\n");
    expect(result.stdout).to.include("Events:            ADDED, MODIFIED, DELETED (all)\n");
  });

  it("update sends only the given fields; an empty --labels removes the selector", async () => {
    registry.on("PATCH", `${WATCHES}/web`, { json: watch("web", {}, {}) });

    const result = await cli(
      "watch",
      "update",
      "--name",
      "web",
      "--labels",
      "",
      "--events",
      "MODIFIED",
    );

    expect(result.code).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({ spec: { labels: null, events: ["MODIFIED"] } });
    expect(result.stdout).to.equal('watch "web" updated (revision 1)\n');
  });

  it("update without any field is a usage error", async () => {
    const result = await cli("watch", "update", "--name", "web");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("nothing to update");
  });

  it("delete sends DELETE and confirms, also as watchtrigger", async () => {
    registry.on("DELETE", `${WATCHES}/web`, { json: watch("web", {}) });

    const result = await cli("watchtrigger", "delete", "--name", "web");

    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal('watch "web" deleted\n');
  });
});
