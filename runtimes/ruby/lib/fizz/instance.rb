# frozen_string_literal: true

require "digest"

module Fizz
  # Used when the specialize body carries no concurrency: Ruby threads share one interpreter lock,
  # so like Python a handful of calls at a time (docs/api.md).
  DEFAULT_CONCURRENCY = 10

  def self.log(message)
    $stderr.write("[fizz] #{message}\n")
  end

  # The platform's error shape: {"error": {"code", "message", "retryable", "field"?}}.
  def self.error_payload(code, message, retryable: false, field: nil)
    error = { "code" => code, "message" => message, "retryable" => retryable }
    error["field"] = field unless field.nil?
    { "error" => error }
  end

  # The instance's own hard concurrency limit: `limit` calls run, up to `queue` more wait, the
  # rest are refused (429). Holds even when the gateways' lease accounting is wrong.
  class Gate
    def initialize(limit, queue)
      @limit = limit
      @queue = queue
      @running = 0
      @waiting = 0
      @lock = Mutex.new
      @free = ConditionVariable.new
    end

    # :now, :waited (it queued first), or nil when the queue is full.
    def enter
      @lock.synchronize do
        if @running < @limit
          @running += 1
          return :now
        end
        return nil if @waiting >= @queue
        @waiting += 1
        @free.wait(@lock) while @running >= @limit
        @waiting -= 1
        @running += 1
        :waited
      end
    end

    def leave
      @lock.synchronize do
        @running -= 1
        @free.signal
      end
    end
  end

  # The slot of the call this thread serves, freed right before its answer's last write (Http),
  # or when the call ends without one. Freed only after that write, a slot is still taken when a
  # client that has the answer sends its next call at once (the gateway does, on another kept-alive
  # connection), and that call is queued or refused with 429 for nothing. One call per thread.
  module Slot
    def self.hold(gate)
      Thread.current[:fizz_slot] = gate
    end

    def self.free
      gate = Thread.current[:fizz_slot] or return
      Thread.current[:fizz_slot] = nil
      gate.leave
    end
  end

  # Configuration from the process environment, and the state warm -> specializing ->
  # specialized | failed, which moves once. User traffic reads only `state` and what was set
  # before it became "specialized".
  class Instance
    attr_reader :port, :host, :instance_id, :workdir, :secrets_dir, :configs_dir, :max_body,
                :form_max, :max_package_bytes, :max_package_entries
    attr_accessor :state, :draining
    attr_reader :function, :concurrency, :gate, :handler, :takes_context, :code_dir, :code_label,
                :logger

    def initialize(env = ENV)
      @port = env_int(env, "PORT", 8888)
      @host = env["HOST"].to_s.empty? ? "0.0.0.0" : env["HOST"]
      @instance_id = env["FIZZ_INSTANCE_ID"].to_s.empty? ? nil : env["FIZZ_INSTANCE_ID"]
      # Read once and dropped before any user code runs; only its hash is kept, so not even this
      # process's memory holds the token once started.
      token = env.delete("FIZZ_SPECIALIZE_TOKEN")
      @token_hash = token.nil? || token.empty? ? nil : Digest::SHA256.digest(token)
      @workdir = abs_or_nil(env["FIZZ_WORKDIR"])
      @secrets_dir = abs_or_nil(env["FIZZ_SECRETS_DIR"])
      @configs_dir = abs_or_nil(env["FIZZ_CONFIGS_DIR"])
      @max_body = env_int(env, "FIZZ_MAX_BODY_BYTES", 64 * 1024 * 1024)
      @form_max = env_int(env, "FIZZ_FORM_MAX_BYTES", 1024 * 1024)
      @max_package_bytes = env_int(env, "FIZZ_MAX_PACKAGE_BYTES", 2 * 1024 * 1024 * 1024)
      @max_package_entries = env_int(env, "FIZZ_MAX_PACKAGE_ENTRIES", 100_000)
      @state = "warm"
      @draining = false
      @lock = Mutex.new
      @busy = 0
      @idle = ConditionVariable.new
      @gate = Gate.new(1, 0)
      @concurrency = 0
    end

    def public_state
      @state == "specializing" ? "warm" : @state
    end

    # The specialize token, compared in constant time (of hashes, so the length leaks nothing);
    # none configured: anyone may.
    def authorized?(given)
      return true if @token_hash.nil?
      return false if given.nil?
      a = Digest::SHA256.digest(given)
      diff = 0
      a.bytes.zip(@token_hash.bytes) { |x, y| diff |= x ^ y }
      diff.zero?
    end

    # The 409 for a specialize after the first one, before its body is read.
    def refusal
      return nil if @state == "warm"
      what = @state == "failed" ? "failed to load its function" : "is already specialized"
      [409, Fizz.error_payload("ALREADY_SPECIALIZED", "this instance #{what}; an instance is specialized once")]
    end

    # warm -> specializing, or the 409 when another specialize got there first.
    def claim
      @lock.synchronize do
        refused = refusal
        return refused if refused
        @state = "specializing"
        nil
      end
    end

    # The loaded function; state "specialized" last, since user traffic checks only that.
    def install(handler, takes_context, function, concurrency, code_dir, code_label)
      @handler = handler
      @takes_context = takes_context
      @function = function
      @concurrency = concurrency
      @gate = Gate.new(concurrency, concurrency)
      @code_dir = code_dir
      @code_label = code_label
      @logger = Logger.new($stdout, progname: function["name"], level: Logger::DEBUG)
      @state = "specialized"
    end

    # Open connections, counted from accept to close, so a drain knows when it is done: a
    # connection idle between requests closes itself once draining, and one whose next request
    # has started is finished (or answered 503) before it closes.
    def connection_opened
      @lock.synchronize { @busy += 1 }
    end

    def connection_closed
      @lock.synchronize do
        @busy -= 1
        @idle.broadcast if @busy.zero?
      end
    end

    def wait_idle(seconds)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
      @lock.synchronize do
        while @busy.positive?
          left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
          return false if left <= 0
          @idle.wait(@lock, left)
        end
      end
      true
    end

    private

    def env_int(env, name, default)
      raw = env[name].to_s
      return default if raw.empty?
      unless raw.match?(/\A\d+\z/)
        Fizz.log("#{name}=#{raw} is not a valid non-negative integer")
        exit(2)
      end
      raw.to_i
    end

    def abs_or_nil(value)
      value.nil? || value.empty? ? nil : File.expand_path(value)
    end
  end
end
