# frozen_string_literal: true

# Fizz environment loader for Ruby functions (docs/runtime-contract.md), run as
# `ruby runtimes/ruby/server.rb`. Accepts Fission's Ruby functions: `def handler` or
# `def handler(context)` returning a String or a Rack triple (runtimes/ruby/README.md).
#
# The process starts generic ("warm"), is specialized exactly once with one function revision,
# and from then on serves only that function. Ruby's standard library and Debian's ruby-rack only.
#
# Trust: POST /v2/specialize needs the token the poolkeeper gave this process at start
# (FIZZ_SPECIALIZE_TOKEN, removed from ENV before any user code runs), so another function that
# finds this port cannot load its own code here; and the code must hash to the digest it came
# with. Once specialized, a second specialize is refused. Invocations are not authenticated: the
# port must only be reachable from the platform.

$stdout.sync = true # function logs reach the collector promptly
$stderr.sync = true

# Without LANG (a bare container) Ruby reads files as US-ASCII; functions expect UTF-8.
Encoding.default_external = Encoding::UTF_8 if Encoding.default_external == Encoding::US_ASCII

require "socket"
require "io/wait"
require "json"
require "logger"
require "stringio"
require "digest"
# Warmed while generic, so the first call does not pay for them: rack sets up autoloads, and
# naming the constants loads them.
require "rack"
%i[Request Response Utils QueryParser Multipart].each { |name| Rack.const_get(name) }
Rack::Utils.const_get(:HeaderHash)

require_relative "lib/fizz/call_marks"
require_relative "lib/fizz/instance"
require_relative "lib/fizz/http"
require_relative "lib/fizz/context"
require_relative "lib/fizz/invoke"
require_relative "lib/fizz/loader"
require_relative "lib/fizz/archive"
require_relative "lib/fizz/specialize"
require_relative "lib/fizz/router"
require_relative "lib/fizz/warm"

module Fizz
  # Kubernetes' default terminationGracePeriodSeconds is 30: finish well inside it.
  SHUTDOWN_GRACE_SECONDS = 25

  def self.main
    CallMarks.install
    rt = Instance.new # reads and deletes FIZZ_SPECIALIZE_TOKEN first of all
    begin
      server = TCPServer.new(rt.host, rt.port)
      server.listen(1024) # a burst must reach the gate (429), not a full backlog
    rescue SystemCallError, SocketError => e
      log("cannot listen on #{rt.host}:#{rt.port}: #{e.message}")
      exit(1)
    end
    warm_up
    wake_r, wake_w = IO.pipe
    router = Router.new(rt, wake_r)
    # A trap may not take locks: it flags and wakes the accept loop, which does the rest. A
    # second signal means "now".
    signalled = false
    %w[TERM INT].each do |sig|
      Signal.trap(sig) do
        exit!(1) if signalled
        signalled = true
        rt.draining = true
        wake_w.write_nonblock("x", exception: false)
      end
    end
    watch_stdin(rt, wake_w) if ENV["FIZZ_PARENT_STDIN"] == "1"
    suffix = rt.instance_id ? " as #{rt.instance_id}" : ""
    log("ruby runtime listening on #{rt.host}:#{rt.port}#{suffix}")
    loop do
      ready, = IO.select([server, wake_r])
      break if ready.include?(wake_r)
      sock = server.accept_nonblock(exception: false)
      next if sock == :wait_readable
      serve(rt, router, sock)
    rescue SystemCallError
      next # reset before we took it
    end
    log("shutting down: no new connections; finishing in-flight calls")
    # Connections the kernel accepted already: a request they sent gets a 503 rather than a
    # reset, an idle one a clean close.
    loop do
      sock = server.accept_nonblock(exception: false)
      break if sock == :wait_readable
      serve(rt, router, sock)
    rescue SystemCallError
      next # that one was reset before we took it
    end
    server.close
    finished = rt.wait_idle(SHUTDOWN_GRACE_SECONDS)
    log("calls still running after #{SHUTDOWN_GRACE_SECONDS}s; exiting") unless finished
    $stdout.flush
    $stderr.flush
    # exit!: threads the function started, and its at_exit hooks, must not keep a drained
    # instance alive.
    exit!(finished ? 0 : 1)
  end

  # Counted from here, not from its first request, so the drain waits for it.
  def self.serve(rt, router, sock)
    rt.connection_opened
    Thread.new(sock) { |s| router.serve(s) }
  rescue StandardError
    rt.connection_closed
    sock.close
  end

  # The process backend's parent holds our stdin pipe: EOF means it is gone, even if it was
  # SIGKILLed, and an instance must not outlive the poolkeeper that tracks it.
  def self.watch_stdin(rt, wake_w)
    Thread.new do
      begin
        loop { $stdin.readpartial(65_536) }
      rescue EOFError, IOError, SystemCallError
        nil
      end
      rt.draining = true
      wake_w.write_nonblock("x", exception: false)
    end
  end
end

Fizz.main
