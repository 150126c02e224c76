# frozen_string_literal: true

# HTTP/1.1 on a plain socket, bounded everywhere: request line and headers, Content-Length and
# chunked bodies, keep-alive. Its own parser (not WEBrick) because the contract needs exact answers
# at exact moments: 421/401 before a body is read, 413 while it streams, an archive body read as a
# stream, and framing that stays right after every refusal.
module Fizz
  module Http
    MAX_LINE = 8 * 1024
    MAX_HEADER_BYTES = 64 * 1024
    MAX_HEADERS = 200
    # An idle keep-alive connection is closed after this: longer than any sane client's idle
    # timeout, so the gateway's pooled connection is never closed just as it sends on it.
    KEEPALIVE_SECONDS = 65
    # A request that has started must keep coming.
    READ_SECONDS = 30
    TOKEN = /\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\z/.freeze
    REASONS = {
      100 => "Continue", 200 => "OK", 201 => "Created", 202 => "Accepted", 204 => "No Content",
      301 => "Moved Permanently", 302 => "Found", 303 => "See Other", 304 => "Not Modified",
      307 => "Temporary Redirect", 308 => "Permanent Redirect", 400 => "Bad Request",
      401 => "Unauthorized", 403 => "Forbidden", 404 => "Not Found", 405 => "Method Not Allowed",
      409 => "Conflict", 413 => "Payload Too Large", 421 => "Misdirected Request",
      429 => "Too Many Requests", 431 => "Request Header Fields Too Large", 500 => "Internal Server Error", 501 => "Not Implemented",
      503 => "Service Unavailable"
    }.freeze

    # A request the runtime answers itself; close: the connection's framing can't be trusted.
    class Error < StandardError
      attr_reader :status, :code, :close

      def initialize(status, code, message, close: false)
        super(message)
        @status = status
        @code = code
        @close = close
      end
    end

    # The client went away, or sent nothing in time: drop the connection without an answer.
    class Gone < StandardError; end

    # Buffered reads with deadlines over a socket.
    class Reader
      def initialize(sock)
        @sock = sock
        @buf = +"".b
      end

      # A line without its CRLF; nil at a clean EOF before any byte (idle keep-alive closed).
      def line(max, timeout)
        loop do
          i = @buf.index("\n")
          if i
            raise Error.new(400, "BAD_REQUEST", "line too long", close: true) if i > max
            out = @buf.slice!(0, i + 1)
            out.chomp!("\n")
            out.chomp!("\r")
            return out
          end
          raise Error.new(400, "BAD_REQUEST", "line too long", close: true) if @buf.bytesize > max
          return nil if !fill(timeout) && @buf.empty?
        end
      end

      # Bytes already read and not yet consumed (the next pipelined request).
      def buffered?
        !@buf.empty?
      end

      # Up to n bytes (at least one), or nil at EOF.
      def partial(n, timeout = READ_SECONDS)
        return nil if @buf.empty? && !fill(timeout)
        @buf.slice!(0, n)
      end

      def exact(n)
        out = +"".b
        while out.bytesize < n
          piece = partial(n - out.bytesize)
          raise Gone, "body cut short" if piece.nil?
          out << piece
        end
        out
      end

      private

      def fill(timeout)
        data = @sock.read_nonblock(64 * 1024, exception: false)
        if data == :wait_readable
          raise Gone, "read timed out" unless @sock.wait_readable(timeout)
          data = @sock.read_nonblock(64 * 1024, exception: false)
          return fill(timeout) if data == :wait_readable
        end
        return false if data.nil?
        @buf << data
        true
      rescue Errno::ECONNRESET, Errno::EPIPE, IOError
        false
      end
    end

    # One parsed request head. headers: [[name, value]] as received (name case kept).
    class Request
      attr_reader :method, :target, :version, :headers
      attr_accessor :body_read

      def initialize(method, target, version, headers)
        @method = method
        @target = target
        @version = version
        @headers = headers
        @index = {}
        headers.each { |name, value| (@index[name.downcase] ||= []) << value }
        @body_read = !body?
      end

      def [](name)
        values = @index[name]
        values&.join(", ")
      end

      def path
        @target.split("?", 2)[0]
      end

      def chunked?
        !@index["transfer-encoding"].nil?
      end

      def content_length
        @content_length ||= (@index["content-length"]&.first || "0").to_i
      end

      def body?
        chunked? || content_length.positive?
      end

      def keep_alive?
        conn = (self["connection"] || "").downcase
        return false if conn.include?("close")
        @version == "HTTP/1.1" || conn.include?("keep-alive")
      end
    end

    module_function

    # The next request's head, or nil when the client closed an idle connection.
    def read_head(reader, first_timeout = KEEPALIVE_SECONDS)
      line = reader.line(MAX_LINE, first_timeout)
      # Tolerate empty lines between requests (RFC 9112 2.2).
      line = reader.line(MAX_LINE, READ_SECONDS) while line && line.empty?
      return nil if line.nil?
      parts = line.split(" ", -1)
      unless parts.length == 3 && parts[0].match?(TOKEN) && parts[2].match?(%r{\AHTTP/1\.[01]\z}) &&
             !parts[1].empty?
        raise Error.new(400, "BAD_REQUEST", "malformed request line", close: true)
      end
      headers = []
      total = 0
      loop do
        h = reader.line(MAX_LINE, READ_SECONDS)
        raise Gone, "head cut short" if h.nil?
        break if h.empty?
        total += h.bytesize
        if total > MAX_HEADER_BYTES || headers.length >= MAX_HEADERS
          raise Error.new(431, "BAD_REQUEST", "request headers too large", close: true)
        end
        name, value = h.split(":", 2)
        if value.nil? || !name.match?(TOKEN) || value.match?(/[\0\r\n]/)
          raise Error.new(400, "BAD_REQUEST", "malformed header line", close: true)
        end
        headers << [name, value.strip]
      end
      req = Request.new(parts[0], parts[1], parts[2], headers)
      check_framing(req)
      req
    end

    # Request smuggling defences: one framing, one length, known encodings only.
    def check_framing(req)
      te = req["transfer-encoding"]
      cl = req.headers.select { |n, _| n.casecmp?("content-length") }.map(&:last)
      if te
        unless te.strip.casecmp?("chunked")
          raise Error.new(501, "NOT_IMPLEMENTED", "transfer-encoding #{te} is not supported", close: true)
        end
        raise Error.new(400, "BAD_REQUEST", "both transfer-encoding and content-length", close: true) unless cl.empty?
      end
      return if cl.empty?
      return if cl.uniq.length == 1 && cl[0].match?(/\A\d{1,18}\z/)
      raise Error.new(400, "BAD_REQUEST", "invalid content-length", close: true)
    end

    # The body as a sequence of pieces (strings), whichever its framing; each piece is at most
    # 64 KiB. limit: 413 once more than that many bytes arrive (or are announced).
    class Body
      attr_reader :total

      def initialize(reader, req, sock, limit)
        @reader = reader
        @req = req
        @limit = limit
        @total = 0
        @done = !req.body?
        @left = req.chunked? ? 0 : req.content_length
        too_large if !req.chunked? && @left > limit
        # Answer Expect: 100-continue only once the body is really going to be read.
        if req.body? && req["expect"]&.casecmp?("100-continue")
          sock.write("HTTP/1.1 100 Continue\r\n\r\n")
        end
      end

      def done?
        @done
      end

      def read_piece
        return nil if @done
        piece = @req.chunked? ? chunked_piece : length_piece
        if piece.nil?
          @done = true
          @req.body_read = true
          return nil
        end
        @total += piece.bytesize
        too_large if @total > @limit
        piece
      end

      def read_all
        out = +"".b
        while (piece = read_piece)
          out << piece
        end
        out
      end

      private

      def too_large
        raise Error.new(413, "PAYLOAD_TOO_LARGE", "request body over #{@limit} bytes", close: true)
      end

      def length_piece
        return nil if @left.zero?
        piece = @reader.partial([@left, 64 * 1024].min)
        raise Gone, "body cut short" if piece.nil?
        @left -= piece.bytesize
        piece
      end

      def chunked_piece
        while @left.zero?
          size_line = @reader.line(MAX_LINE, READ_SECONDS)
          raise Gone, "body cut short" if size_line.nil?
          hex = size_line.split(";", 2)[0].strip
          raise Error.new(400, "BAD_REQUEST", "malformed chunk size", close: true) unless hex.match?(/\A[0-9A-Fa-f]{1,15}\z/)
          size = hex.to_i(16)
          if size.zero?
            skip_trailers
            return nil
          end
          too_large if @total + size > @limit
          @left = size
          @in_chunk = true
        end
        piece = @reader.partial([@left, 64 * 1024].min)
        raise Gone, "body cut short" if piece.nil?
        @left -= piece.bytesize
        if @left.zero?
          crlf = @reader.line(2, READ_SECONDS)
          raise Error.new(400, "BAD_REQUEST", "malformed chunk", close: true) unless crlf == ""
        end
        piece
      end

      def skip_trailers
        count = 0
        loop do
          t = @reader.line(MAX_LINE, READ_SECONDS)
          raise Gone, "body cut short" if t.nil?
          break if t.empty?
          count += 1
          raise Error.new(400, "BAD_REQUEST", "too many trailers", close: true) if count > MAX_HEADERS
        end
      end
    end

    # Status line, headers and body in one write. headers: [[name, value]].
    def write_response(sock, req, status, headers, body, close)
      head = "HTTP/1.1 #{status} #{REASONS[status] || 'Unknown'}\r\n".b
      headers.each { |name, value| head << name.b << ": " << value.b << "\r\n" }
      head << "Content-Length: #{body.bytesize}\r\n" unless status == 204 || status == 304 || status < 200
      head << "Connection: close\r\n" if close
      head << "\r\n"
      out = head
      out << body.b unless req&.method == "HEAD" || status == 204 || status == 304
      Slot.free # the answer's last write: a call's slot is free before its client can have it
      sock.write(out)
    end

    # A streamed answer: chunked, one chunk per piece the body yields.
    def write_streamed(sock, req, status, headers, body, close)
      head = "HTTP/1.1 #{status} #{REASONS[status] || 'Unknown'}\r\n".b
      headers.each { |name, value| head << name.b << ": " << value.b << "\r\n" }
      head << "Transfer-Encoding: chunked\r\n"
      head << "Connection: close\r\n" if close
      head << "\r\n"
      Slot.free if req.method == "HEAD" # the head is all of it
      sock.write(head)
      return if req.method == "HEAD"
      body.each do |piece|
        raise TypeError, "a Rack body yielded a #{piece.class}, not a String" unless piece.is_a?(String)
        next if piece.empty?
        sock.write("#{piece.bytesize.to_s(16)}\r\n".b + piece.b + "\r\n".b)
      end
      Slot.free
      sock.write("0\r\n\r\n")
    end
  end
end
