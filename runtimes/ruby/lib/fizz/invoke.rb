# frozen_string_literal: true

module Fizz
  # The function returned something that cannot be turned into a response.
  class ResultError < StandardError; end

  # One call of the user's function: request -> context, return value -> response.
  module Invoke
    HEADER_NAME = /\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\z/.freeze
    # Framing is the runtime's job: a function-supplied length or encoding would corrupt the
    # response (or smuggle a second one into a keep-alive connection).
    FRAMING = %w[content-length transfer-encoding connection keep-alive].freeze
    TEXT = "text/plain; charset=utf-8"
    JSON_TYPE = "application/json; charset=utf-8"

    module_function

    # Calls the function. Returns [status, headers, body]: body a String, or an object whose
    # #each yields Strings (a streamed Rack body).
    def call(handler, takes_context, context)
      result = takes_context ? handler.call(context) : handler.call
      to_response(result)
    end

    def to_response(result)
      result = result.finish if defined?(Rack::Response) && result.is_a?(Rack::Response)
      return rack_triple(result) if triple?(result)
      case result
      when String
        return [200, [["Content-Type", "application/octet-stream"]], result] if result.encoding == Encoding::BINARY
        [200, [["Content-Type", TEXT]], utf8(result)]
      when nil
        [204, [], ""]
      else
        unless json_value?(result, 0)
          raise ResultError, "cannot answer with a #{result.class}: return a String, a Rack triple " \
                             "[status, headers, body], a Hash or an Array"
        end
        begin
          [200, [["Content-Type", JSON_TYPE]], JSON.generate(result)]
        rescue JSON::GeneratorError => e
          raise ResultError, "cannot answer with this value as JSON: #{e.message}"
        end
      end
    end

    # Text is declared UTF-8, so it is sent as UTF-8 (a Latin-1 String is converted).
    def utf8(text)
      return text if text.encoding == Encoding::UTF_8 || text.ascii_only?
      text.encode(Encoding::UTF_8)
    rescue EncodingError
      text
    end

    # Fission's Rack answer: [status, headers, body]. Any other Array is JSON.
    # The status may be a String of three digits: Rack 2's Lint took anything with a #to_i.
    def triple?(result)
      return false unless result.is_a?(Array) && result.length == 3 && result[1].respond_to?(:each_pair)
      status = result[0]
      status.is_a?(Integer) || (status.is_a?(String) && status.match?(/\A\d{3}\z/))
    end

    def rack_triple(result)
      status, headers, body = result
      status = status.to_i
      raise ResultError, "Rack status #{status} is not between 200 and 599" unless (200..599).cover?(status)
      out = []
      typed = false
      headers.each_pair do |name, value|
        name = name.to_s
        raise ResultError, "header name #{name.inspect} is not valid" unless name.match?(HEADER_NAME)
        next if FRAMING.include?(name.downcase)
        typed ||= name.casecmp?("content-type")
        # Rack 2 joins repeated values with "\n" (Set-Cookie); Rack 3 uses an Array.
        values = value.is_a?(Array) ? value : value.to_s.split("\n")
        values.each do |v|
          v = v.to_s
          raise ResultError, "header #{name} has a value with a line break" if v.match?(/[\r\n\0]/)
          out << [name, v]
        end
      end
      no_body = status == 204 || status == 304
      # Untyped text: text/plain, never sniffed as HTML (Fission's Thin sent no type at all).
      out << ["Content-Type", TEXT] unless typed || no_body
      out << ["X-Content-Type-Options", "nosniff"] unless typed || no_body
      [status, out, rack_body(body, no_body)]
    end

    def rack_body(body, no_body)
      # Rack 1's habit of a String body, accepted rather than refused.
      return body if body.is_a?(String) && !no_body
      raise ResultError, "a Rack body must respond to #each" unless body.respond_to?(:each)
      if body.is_a?(Array)
        out = +"".b
        body.each do |piece|
          raise ResultError, "a Rack body yielded a #{piece.class}, not a String" unless piece.is_a?(String)
          out << piece.b
        end
        body.close if body.respond_to?(:close)
        return no_body ? "" : out
      end
      if no_body
        body.close if body.respond_to?(:close)
        return ""
      end
      body # streamed by the caller, which closes it
    end

    def json_value?(value, depth)
      return false if depth > 100
      case value
      when String, Integer, true, false, nil then true
      when Float then value.finite?
      when Array then value.all? { |v| json_value?(v, depth + 1) }
      when Hash
        value.all? { |k, v| (k.is_a?(String) || k.is_a?(Symbol)) && json_value?(v, depth + 1) }
      else false
      end
    end
  end
end
