# frozen_string_literal: true

module Fizz
  # Call markers (shared/events/src/logs.ts): the platform tags the lines after
  # `\e_fizz:call=<id>\e\\` on stdout or stderr with request <id>, until `\e_fizz:call=\e\\`.
  #
  # Calls run in threads of one process, so every write knows whose it is: the thread that runs a
  # call carries its request id (Thread#[] is fiber-local, so a thread or fiber the function starts
  # writes as "no call"). A write whose owner is not the one the stream is marked with is preceded
  # by the owner's marker, ending an unfinished line first: a call that prints nothing costs no
  # write, and one that prints pays a marker only where the stream changes hands (and a clearing
  # one at its end, see release). The writes go
  # through IO#write, which puts, print, printf, <<, Logger and warn all use; STDOUT and STDERR
  # are marked themselves, and $stderr is a marked IO of its own because Ruby writes `warn` and
  # errors straight to C's stderr when $stderr is the original one.
  module CallMarks
    PATTERN = /\A[A-Za-z0-9._:-]{1,128}\z/

    # What one file descriptor is marked with, shared by every IO object writing to it.
    class Stream
      attr_accessor :mark, :open
      attr_reader :lock

      def initialize
        @lock = Thread::Mutex.new
        @mark = ""
        @open = false
      end
    end

    STREAMS = { 1 => Stream.new, 2 => Stream.new }.freeze
    # Where a clearing marker goes (STDERR, not $stderr, which a function may reassign).
    RELEASED = { 1 => STDOUT, 2 => STDERR }.freeze

    # Prepended to the singleton class of each marked IO.
    module Marked
      def write(*args)
        stream = STREAMS[fileno]
        return super if stream.nil?

        owner = Thread.current[:fizz_call] || ""
        data = args.length == 1 ? args[0].to_s : args.map(&:to_s).join
        return super if data.empty?

        # A trap handler cannot take a lock: it writes as it is (its lines are the runtime's).
        return super if stream.lock.owned?

        stream.lock.synchronize do
          if owner == stream.mark
            super(data)
          else
            marker = "#{stream.open ? "\n" : ""}\e_fizz:call=#{owner}\e\\\n"
            super(marker.b << data.b)
            stream.mark = owner
          end
          stream.open = !data.end_with?("\n")
        end
        data.bytesize
      rescue ThreadError
        super
      end
    end

    def self.install
      [STDOUT, STDERR].each { |io| io.singleton_class.prepend(Marked) }
      err = IO.new(2, "w", autoclose: false)
      err.sync = true
      err.singleton_class.prepend(Marked)
      $stderr = err
    end

    # This thread runs the call with this request id now: its output is marked with it (a missing
    # or malformed id marks nothing: the output then belongs to no call). Returns what leave takes.
    def self.enter(request_id)
      previous = Thread.current[:fizz_call]
      Thread.current[:fizz_call] = request_id.is_a?(String) && PATTERN.match?(request_id) ? request_id : ""
      previous
    end

    def self.leave(previous)
      id = Thread.current[:fizz_call]
      Thread.current[:fizz_call] = previous
      release(id) if id.is_a?(String) && !id.empty?
    end

    # The call is over: a stream still marked with it goes back to no call's, so what reaches its
    # fd around IO#write afterwards (a child process, syswrite, C code, a crash's trace) is not
    # tagged with it. Only calls that printed pay a write.
    def self.release(id)
      RELEASED.each do |fd, io|
        stream = STREAMS[fd]
        next unless stream.mark == id

        stream.lock.synchronize do
          next unless stream.mark == id

          # The lock is held, so Marked#write passes this through as it is.
          stream.mark = ""
          was_open = stream.open
          stream.open = false
          io.write("#{was_open ? "\n" : ""}\e_fizz:call=\e\\\n")
        end
      rescue IOError, SystemCallError
        nil # a closed stream: the call's answer is out regardless
      end
    end
  end
end
