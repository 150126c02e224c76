import { expect } from "chai";
import { apiError, apiObject, fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const MQT = "/v1/namespaces/default/mqtriggers";

describe("fizz mqt", () => {
  let registry: FakeServer;

  before(async () => {
    registry = await FakeServer.start();
  });
  afterEach(() => registry.reset());
  after(() => registry.close());

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });

  it("create sends every given field and says where messages go", async () => {
    const spec = {
      function: "resize",
      subject: "upload.*",
      queueGroup: "resizers",
      responseSubject: "images.resized",
      errorSubject: "images.failed",
      maxRetries: 5,
      contentType: "image/png",
      stream: "IMAGES",
    };
    registry.on("POST", MQT, { status: 201, json: apiObject("mqtriggers", "resize", spec) });

    const result = await cli(
      "mqt",
      "create",
      "--name",
      "resize",
      "--function",
      "resize",
      "--subject",
      "upload.*",
      "--queue-group",
      "resizers",
      "--response-subject",
      "images.resized",
      "--error-subject",
      "images.failed",
      "--max-retries",
      "5",
      "--content-type",
      "image/png",
      "--stream",
      "IMAGES",
    );

    expect(result.code, result.stderr).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({ name: "resize", spec });
    expect(result.stdout).to.equal(
      'message queue trigger "resize" created: upload.* (stream IMAGES) -> resize -> images.resized\n',
    );
  });

  it("create sends only what was given, under the messagequeue alias too", async () => {
    const spec = { function: "f", subject: "orders.created" };
    registry.on("POST", MQT, { status: 201, json: apiObject("mqtriggers", "orders", spec) });

    for (const alias of ["mqt", "messagequeue", "mqtrigger"]) {
      registry.requests.length = 0;
      const result = await cli(
        alias,
        "create",
        "--name",
        "orders",
        "--function",
        "f",
        "--subject",
        "orders.created",
      );

      expect(result.code, alias).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({ name: "orders", spec });
      expect(result.stdout).to.equal(
        'message queue trigger "orders" created: orders.created -> f\n',
      );
    }
  });

  it("create needs --subject and an integer --max-retries (usage errors, nothing sent)", async () => {
    const noSubject = await cli("mqt", "create", "--name", "x", "--function", "f");
    const badRetries = await cli(
      "mqt",
      "create",
      "--name",
      "x",
      "--function",
      "f",
      "--subject",
      "s",
      "--max-retries",
      "many",
    );

    expect(noSubject.code).to.equal(2);
    expect(noSubject.stderr).to.include("--subject");
    expect(badRetries.code).to.equal(2);
    expect(badRetries.stderr).to.include("must be an integer");
    expect(registry.requests).to.have.length(0);
  });

  it("create reports an internal subject refusal with the registry's message and code", async () => {
    registry.on("POST", MQT, {
      status: 400,
      json: apiError(
        "VALIDATION_FAILED",
        'spec.subject: "fizz.v1.>" overlaps the platform\'s internal subjects',
        "spec.subject",
      ),
    });

    const result = await cli(
      "mqt",
      "create",
      "--name",
      "x",
      "--function",
      "f",
      "--subject",
      "fizz.v1.>",
    );

    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal(
      'Error: spec.subject: "fizz.v1.>" overlaps the platform\'s internal subjects (VALIDATION_FAILED)\n',
    );
  });

  it("list shows NAME, FUNCTION, SUBJECT, QUEUE GROUP, RESPONSE SUBJECT, STREAM, REVISION and AGE", async () => {
    registry.on("GET", `${MQT}?limit=500`, {
      json: {
        items: [
          apiObject("mqtriggers", "orders", { function: "f", subject: "orders.>", maxRetries: 3 }),
          apiObject(
            "mqtriggers",
            "resize",
            {
              function: "resize",
              subject: "upload.*",
              queueGroup: "resizers",
              responseSubject: "images.done",
              stream: "IMAGES",
            },
            { revision: 2 },
          ),
        ],
      },
    });

    const result = await cli("mqt", "ls");

    expect(result.stdout.split("\n")).to.deep.equal([
      "NAME     FUNCTION   SUBJECT    QUEUE GROUP   RESPONSE SUBJECT   STREAM   REVISION   AGE",
      "orders   f          orders.>   -             -                  -        1          5m",
      "resize   resize     upload.*   resizers      images.done        IMAGES   2          5m",
      "",
    ]);
  });

  it("list of an empty namespace says so on stderr and prints nothing on stdout", async () => {
    registry.on("GET", "/v1/namespaces/team-a/mqtriggers?limit=500", { json: { items: [] } });

    const result = await cli("-n", "team-a", "mqt", "list");

    expect(result.stdout).to.equal("");
    expect(result.stderr).to.equal('No message queue triggers found in namespace "team-a".\n');
  });

  it("get shows the default queue group and the delivery guarantee", async () => {
    registry.on("GET", `${MQT}/orders`, {
      json: apiObject("mqtriggers", "orders", {
        function: "f",
        subject: "orders.>",
        maxRetries: 3,
        contentType: "application/json",
      }),
    });

    const result = await cli("mqt", "get", "--name", "orders");

    expect(result.stdout).to.include("Queue group:      fizz-mqt-default-orders (its own)\n");
    expect(result.stdout).to.include("Delivery:         core NATS (at most once)\n");
    expect(result.stdout).to.include("Response subject: -\n");
  });

  it("get -o json prints the trigger as returned", async () => {
    const trigger = apiObject("mqtriggers", "orders", { function: "f", subject: "orders.>" });
    registry.on("GET", `${MQT}/orders`, { json: trigger });

    const result = await cli("mqt", "get", "--name", "orders", "-o", "json");

    expect(JSON.parse(result.stdout)).to.deep.equal(trigger);
  });

  it("update PATCHes the given fields, and an empty value unsets one (null)", async () => {
    registry.on("PATCH", `${MQT}/orders`, {
      json: apiObject(
        "mqtriggers",
        "orders",
        { function: "g", subject: "orders.>" },
        { revision: 3 },
      ),
    });

    const result = await cli(
      "mqt",
      "update",
      "--name",
      "orders",
      "--function",
      "g",
      "--response-subject",
      "",
      "--stream",
      "",
    );

    expect(result.code).to.equal(0);
    expect(registry.jsonBody(0)).to.deep.equal({
      spec: { function: "g", responseSubject: null, stream: null },
    });
    expect(result.stdout).to.equal('message queue trigger "orders" updated (revision 3)\n');
  });

  it("update without any field is a usage error", async () => {
    const result = await cli("mqt", "update", "--name", "orders");

    expect(result.code).to.equal(2);
    expect(result.stderr).to.include("nothing to update");
    expect(registry.requests).to.have.length(0);
  });

  it("delete sends DELETE and confirms", async () => {
    registry.on("DELETE", `${MQT}/orders`, {
      json: apiObject("mqtriggers", "orders", { function: "f", subject: "orders.>" }),
    });

    const result = await cli("mqt", "rm", "--name", "orders");

    expect(result.code).to.equal(0);
    expect(registry.calls()).to.deep.equal([`DELETE ${MQT}/orders`]);
    expect(result.stdout).to.equal('message queue trigger "orders" deleted\n');
  });
});
