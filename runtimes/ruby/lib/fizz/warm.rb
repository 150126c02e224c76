# frozen_string_literal: true

module Fizz
  # Runs the call path once on a made-up request while the instance is generic, so that the
  # first real call does not pay Ruby's first-time costs (method caches, Rack's lazily built
  # parsers, the JSON and digest extensions): ~1-3 ms off the first answer. Nothing it touches
  # is global state the function could see.
  def self.warm_up
    headers = { "host" => "warm", "content-type" => "application/x-www-form-urlencoded" }
    context = Context.new(
      method: "POST", url: "/warm?a=1&a=2&b=", headers: headers,
      raw_headers: [%w[Host warm], %w[Content-Type application/x-www-form-urlencoded]],
      params: { "id" => "1" }, body: +"q=1&r=%20".b, request_id: "warm", function: {},
      logger: Logger.new(IO::NULL), peer: "127.0.0.1", host: "warm", port: 0
    )
    context.request.params
    context.request.headers
    context.query
    context.text
    Invoke.to_response("text")
    Invoke.to_response({ "a" => [1, "b", nil, true] })
    Invoke.to_response([200, { "Content-Type" => "text/plain" }, ["x"]])
    JSON.parse('{"function":{"revision":1},"code":"eA=="}')["code"].unpack1("m0")
    Digest::SHA256.hexdigest("warm")
    SecureRandom.uuid
  rescue StandardError => e
    log("warm-up failed (harmless): #{e.class}: #{e.message}")
  end
end
