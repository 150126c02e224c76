# frozen_string_literal: true

require "securerandom"

module Fizz
  # One connection: requests in turn (keep-alive), each routed to an internal endpoint or to the
  # function. A request carrying X-Fizz-Instance always goes to the function.
  class Router
    PARAM_PREFIX = "x-fizz-params-"

    # draining: an IO that turns readable when the drain starts (and stays so).
    def initialize(instance, draining)
      @rt = instance
      @draining = draining
      @specializer = Specializer.new(instance)
    end

    def serve(sock)
      sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      peer = begin
        sock.remote_address.ip_address
      rescue StandardError
        "127.0.0.1"
      end
      reader = Http::Reader.new(sock)
      loop do
        # Idle until a request's first byte: a drain that starts meanwhile closes the connection.
        new_after_drain = false
        unless reader.buffered?
          ready, = IO.select([sock, @draining], nil, nil, Http::KEEPALIVE_SECONDS)
          break if ready.nil? || !ready.include?(sock)
          new_after_drain = @rt.draining
        end
        req = nil
        begin
          req = Http.read_head(reader, Http::READ_SECONDS)
        rescue Http::Error => e
          send_json(sock, nil, e.status, Fizz.error_payload(e.code, e.message), close: true)
          break
        end
        break if req.nil?
        if new_after_drain
          # Began after the drain did: not in flight, so refused; the client retries elsewhere.
          send_json(sock, req, 503, Fizz.error_payload("SHUTTING_DOWN", "the instance is shutting down", retryable: true),
                    close: true)
          break
        end
        break unless handle(sock, reader, req, peer)
      end
    rescue Http::Gone, SystemCallError, IOError
      # the client went away
    rescue StandardError => e
      Fizz.log("internal error: #{e.class}: #{e.message}\n#{Array(e.backtrace).join("\n")}")
    ensure
      linger_close(sock)
      @rt.connection_closed
    end

    private

    # Returns whether the connection stays open.
    def handle(sock, reader, req, peer)
      target = req["x-fizz-instance"]
      if target.nil?
        case req.path
        when "/healthz", "/readyz" then return probe(sock, req)
        when "/v2/specialize" then return specialize(sock, reader, req)
        end
      end
      invoke(sock, reader, req, target, peer)
    rescue Http::Error => e
      send_json(sock, req, e.status, Fizz.error_payload(e.code, e.message), close: e.close)
    rescue Http::Gone, SystemCallError, IOError
      raise
    rescue StandardError => e
      Fizz.log("internal error: #{e.class}: #{e.message}\n#{Array(e.backtrace).join("\n")}")
      send_json(sock, req, 500, Fizz.error_payload("INTERNAL", "internal error in the runtime", retryable: true),
                close: true)
    end

    def probe(sock, req)
      return not_allowed(sock, req, "GET, HEAD") unless %w[GET HEAD].include?(req.method)
      state = @rt.public_state
      return send_json(sock, req, 200, { "status" => "ok", "state" => state }) if req.path == "/healthz"
      ready = @rt.state == "specialized" && !@rt.draining
      send_json(sock, req, ready ? 200 : 503, { "status" => ready ? "ready" : "not-ready", "state" => state })
    end

    def not_allowed(sock, req, allow)
      send_json(sock, req, 405, Fizz.error_payload("METHOD_NOT_ALLOWED", "use #{allow}"), headers: [["Allow", allow]])
    end

    def specialize(sock, reader, req)
      return not_allowed(sock, req, "POST") unless req.method == "POST"
      unless @rt.authorized?(req["x-fizz-specialize-token"])
        message = "x-fizz-specialize-token: missing or wrong; only the poolkeeper specializes"
        return send_json(sock, req, 401, Fizz.error_payload("UNAUTHENTICATED", message, field: "x-fizz-specialize-token"),
                         close: true)
      end
      refused = @rt.refusal
      return send_json(sock, req, *refused) if refused
      content_type = req["content-type"].to_s.split(";", 2).first.to_s.strip.downcase
      if content_type == Specializer::ARCHIVE_CONTENT_TYPE
        limit = @rt.max_package_bytes + Specializer::MAX_JSON_LINE_BYTES + 1
        body = Http::Body.new(reader, req, sock, limit)
        status, payload, close = @specializer.specialize_archive(body)
        return send_json(sock, req, status, payload, close: close)
      end
      raw = Http::Body.new(reader, req, sock, @rt.max_body).read_all
      send_json(sock, req, *@specializer.specialize_json(raw))
    end

    def invoke(sock, reader, req, target, peer)
      if target && @rt.instance_id && target != @rt.instance_id
        message = "this is instance #{@rt.instance_id}, not #{target}"
        return send_json(sock, req, 421, Fizz.error_payload("MISDIRECTED", message, retryable: true))
      end
      unless @rt.state == "specialized"
        why = @rt.state == "failed" ? "the function failed to load" : "the instance is not specialized"
        return send_json(sock, req, 503, Fizz.error_payload("NOT_SPECIALIZED", why, retryable: true))
      end
      gate = @rt.gate
      admitted = gate.enter
      unless admitted
        message = "#{@rt.concurrency} calls running and #{@rt.concurrency} queued"
        return send_json(sock, req, 429, Fizz.error_payload("INSTANCE_BUSY", message, retryable: true),
                         headers: [["Retry-After", "1"]])
      end
      Slot.hold(gate)
      begin
        # A call that waited in the queue while its client gave up (the gateway's timeout) is
        # not run: nobody would read its answer, and it would hold the slot once more.
        raise Http::Gone, "client left while queued" if admitted == :waited && client_gone?(sock)
        call(sock, reader, req, peer)
      ensure
        Slot.free
      end
    end

    def call(sock, reader, req, peer)
      body = Http::Body.new(reader, req, sock, @rt.max_body).read_all
      headers = {}
      params = {}
      req.headers.each do |name, value|
        key = name.downcase
        headers[key] = headers.key?(key) ? "#{headers[key]}, #{value}" : value
        params[name[PARAM_PREFIX.length..]] = value if key.start_with?(PARAM_PREFIX) && key.length > PARAM_PREFIX.length
      end
      request_id = headers["x-request-id"] || SecureRandom.uuid
      previous_call = CallMarks.enter(headers["x-request-id"])
      host, port = (headers["host"] || "localhost").split(":", 2)
      context = Context.new(
        method: req.method, url: req.target, headers: headers, raw_headers: req.headers, params: params,
        body: body, request_id: request_id, function: @rt.function, logger: @rt.logger, peer: peer,
        host: host, port: port || @rt.port, form_max: @rt.form_max
      )
      begin
        status, out_headers, payload = Invoke.call(@rt.handler, @rt.takes_context, context)
      rescue InvalidBody => e
        return send_json(sock, req, 400, Fizz.error_payload("INVALID_BODY", e.message))
      rescue FormTooLarge => e
        return send_json(sock, req, 413, Fizz.error_payload("PAYLOAD_TOO_LARGE", e.message))
      rescue ResultError => e
        Fizz.log("bad return value (request #{request_id}): #{e.message}")
        return send_json(sock, req, 500, Fizz.error_payload("FUNCTION_ERROR", e.message))
      rescue Exception => e # rubocop:disable Lint/RescueException -- `exit` in a call must not end the instance
        raise if e.is_a?(Http::Gone)
        Fizz.log("function error (request #{request_id}): #{e.class}: #{e.message}\n#{Array(e.backtrace).join("\n")}")
        message = Loader.describe(e, @rt.code_dir, @rt.code_label)
        return send_json(sock, req, 500, Fizz.error_payload("FUNCTION_ERROR", message))
      end
      close = must_close?(req)
      if payload.is_a?(String)
        Http.write_response(sock, req, status, out_headers, payload, close)
      else
        close = true unless stream(sock, req, status, out_headers, payload)
      end
      !close
    ensure
      CallMarks.leave(previous_call)
    end

    # A streamed Rack body: chunked as it is produced. A failure half-way can only cut the
    # answer short: the connection closes without the final chunk, so the client sees it.
    # Returns whether the answer was complete. (The router is shared by every connection's
    # thread: no per-call state in instance variables.)
    def stream(sock, req, status, headers, body)
      Http.write_streamed(sock, req, status, headers, body, must_close?(req))
      true
    rescue SystemCallError, IOError
      raise
    rescue Exception => e # rubocop:disable Lint/RescueException
      Fizz.log("function error while streaming: #{e.class}: #{e.message}\n#{Array(e.backtrace).join("\n")}")
      false
    ensure
      body.close if body.respond_to?(:close)
    end

    # The client closed its side: a peek sees end-of-file (or a reset).
    def client_gone?(sock)
      sock.recv_nonblock(1, Socket::MSG_PEEK, exception: false) == ""
    rescue SystemCallError, IOError
      true
    end

    # A request body we did not read would be parsed as the next request: close instead.
    def must_close?(req)
      req.nil? || @rt.draining || !req.keep_alive? || !req.body_read
    end

    # Returns whether the connection stays open.
    def send_json(sock, req, status, payload, headers: [], close: false)
      close ||= must_close?(req)
      body = JSON.generate(payload)
      Http.write_response(sock, req, status, headers + [["Content-Type", "application/json; charset=utf-8"]], body, close)
      !close
    end

    # Closing a socket with unread input makes the kernel send a reset, which can destroy the
    # answer just written before the client reads it: half-close, then drain briefly.
    def linger_close(sock)
      sock.close_write
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 1.0
      loop do
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        break if left <= 0
        data = sock.read_nonblock(64 * 1024, exception: false)
        if data == :wait_readable
          break unless sock.wait_readable(left)
        elsif data.nil?
          break
        end
      end
    rescue StandardError
      nil
    ensure
      begin
        sock.close
      rescue StandardError
        nil
      end
    end
  end
end
