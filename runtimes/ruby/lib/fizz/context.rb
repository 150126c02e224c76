# frozen_string_literal: true

module Fizz
  # Raised by Context#json on a body that is not JSON; uncaught, the call answers 400 INVALID_BODY.
  class InvalidBody < StandardError; end

  # Raised by Request#POST (and #params) on a urlencoded form over FIZZ_FORM_MAX_BYTES or of more
  # than FORM_MAX_PARAMS parameters; uncaught, the call answers 413 PAYLOAD_TOO_LARGE.
  class FormTooLarge < StandardError; end

  FORM_MAX_PARAMS = 1000

  # Fission's request (fission/request.rb): a Rack::Request with #headers (names as
  # "Content-Type", sorted) and #params that include the route parameters.
  class Request < Rack::Request
    PARAMETERS_KEY = "fission.request.parameters"

    def headers
      env.select { |k, _| k.start_with?("HTTP_") }
         .map { |k, v| [k.delete_prefix("HTTP_").split("_").map(&:capitalize).join("-"), v] }
         .sort.to_h
    end

    def params
      env[PARAMETERS_KEY] ||= super.merge(path_parameters)
    end

    # The form, within the limits the Node and Python runtimes keep (Express's and Flask's), read
    # on every access so a function that catches the refusal sees it again.
    def POST # rubocop:disable Naming/MethodName -- Rack's name
      if media_type == "application/x-www-form-urlencoded"
        input = get_header(Rack::RACK_INPUT)
        size = input.respond_to?(:size) ? input.size : 0
        limit = env["fizz.form_max"] || (1024 * 1024)
        raise FormTooLarge, "form body over FIZZ_FORM_MAX_BYTES (#{limit} bytes)" if size > limit
        if input.respond_to?(:string) && input.string.count("&") >= FORM_MAX_PARAMS
          raise FormTooLarge, "form of more than #{FORM_MAX_PARAMS} parameters"
        end
      end
      super
    end

    # Route parameters, named as the route declares them ({userId} -> "userId"), from the
    # gateway's X-Fizz-Params-<name> headers. (Fission lower-cases them: Go canonicalized its
    # X-Fission-Params-* header names on the way.)
    def path_parameters
      env["fizz.params"] || {}
    end
  end

  # What the function gets: the Rack request and a logger as in Fission (context.request,
  # context.logger, context.env), plus the platform's plain view of the call (method, path,
  # query, headers, body, params, request_id, function) as the other runtimes give it.
  class Context
    attr_reader :path, :url, :headers, :body, :params, :request_id, :function, :logger

    def initialize(method:, url:, headers:, raw_headers:, params:, body:, request_id:, function:,
                   logger:, peer:, host:, port:, form_max: 1024 * 1024)
      @method = method
      @url = url
      @path, @query_string = url.split("?", 2)
      @query_string ||= ""
      @headers = headers
      @raw_headers = raw_headers
      @params = params
      @body = body
      @request_id = request_id
      @function = function
      @logger = logger
      @peer = peer
      @host = host
      @port = port
      @form_max = form_max
    end

    # context.method is the HTTP method; context.method(:name) is still Object#method.
    def method(*args)
      args.empty? ? @method : super
    end

    alias http_method method

    # Query parameters: strings, arrays for repeated keys.
    def query
      @query ||= Rack::Utils.parse_query(@query_string)
    end

    # The body decoded as text (the Content-Type's charset, else UTF-8; bad bytes replaced).
    def text
      charset = headers["content-type"].to_s[/;\s*charset="?([^";\s]+)/i, 1] || "UTF-8"
      encoding = begin
        Encoding.find(charset)
      rescue ArgumentError
        Encoding::UTF_8
      end
      @body.dup.force_encoding(encoding).encode("UTF-8", invalid: :replace, undef: :replace)
    rescue EncodingError
      @body.dup.force_encoding("UTF-8").scrub
    end

    # The body parsed as JSON (nil when empty); InvalidBody when it is not JSON.
    def json
      return @json if defined?(@json)
      @json = @body.empty? ? nil : JSON.parse(@body.dup.force_encoding("UTF-8"))
    rescue JSON::ParserError, EncodingError => e
      raise InvalidBody, "invalid JSON body: #{e.message.lines.first&.strip}"
    end

    def request
      @request ||= Request.new(env)
    end

    # The Rack env of the call, built on first use.
    def env
      @env ||= build_env
    end

    def inspect
      "#<Fizz::Context #{@method} #{@url} request_id=#{@request_id}>"
    end

    private

    def build_env
      env = {
        "REQUEST_METHOD" => @method, "SCRIPT_NAME" => "", "PATH_INFO" => @path,
        "QUERY_STRING" => @query_string, "REQUEST_URI" => @url,
        "SERVER_NAME" => @host, "SERVER_PORT" => @port.to_s, "SERVER_PROTOCOL" => "HTTP/1.1",
        "REMOTE_ADDR" => @peer, "rack.version" => Rack::VERSION, "rack.url_scheme" => "http",
        "rack.input" => StringIO.new(@body), "rack.errors" => $stderr,
        "rack.multithread" => true, "rack.multiprocess" => false, "rack.run_once" => false,
        "rack.logger" => @logger, "fizz.params" => @params, "fizz.context" => self,
        "fizz.form_max" => @form_max
      }
      env["CONTENT_LENGTH"] = @body.bytesize.to_s unless @body.empty?
      @raw_headers.each do |name, value|
        # A name with "_" would read as another header once turned into HTTP_* (X_Fizz_Params_id
        # posing as the gateway's X-Fizz-Params-id): dropped, as nginx and Python's runtime do.
        next if name.include?("_")
        key = name.upcase.tr("-", "_")
        case key
        when "CONTENT_TYPE" then env["CONTENT_TYPE"] = value
        when "CONTENT_LENGTH", "TRANSFER_ENCODING" then next
        else
          key = "HTTP_#{key}"
          sep = key == "HTTP_COOKIE" ? "; " : ", "
          env[key] = env.key?(key) ? "#{env[key]}#{sep}#{value}" : value
        end
      end
      env
    end
  end
end

# Fission's names, so functions that refer to them keep working.
module Fission
  Context = Fizz::Context
  Request = Fizz::Request
end
