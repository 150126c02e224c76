# frozen_string_literal: true

require "zlib"

module Fizz
  # The archive holds something other than regular files and directories under clean relative
  # paths, or is over a cap, or is not a gzip'd tar.
  class ArchiveUnsafe < StandardError; end

  # A streaming tar reader that writes only regular files (0600, 0700 when executable by their
  # owner) and directories (0700) under `root`, never a link, refusing (ArchiveUnsafe, naming the
  # entry) anything else. Its own header parsing rather than Gem::Package::TarReader, which needs
  # a seekable whole-archive IO and follows no rules of ours. Feed it decompressed bytes with <<.
  class TarExtractor
    BLOCK = 512
    ZERO_BLOCK = ("\0" * BLOCK).b.freeze
    MAX_META = 1024 * 1024 # a pax header or GNU long name bigger than this is not a name
    # Extended headers are not entries (FIZZ_MAX_PACKAGE_ENTRIES does not count them), and "g" and
    # "K" ones are read and dropped: so a run of them before one entry, and their total, are capped.
    MAX_META_RUN = 4 # x, g, L and K once each
    MAX_META_TOTAL = 64 * 1024 * 1024
    # A packer pads the archive after its two zero blocks to a record (10 KiB for GNU tar and
    # Python); more than this after the end is not padding but bytes inflated for nothing.
    MAX_TRAILING = 1024 * 1024
    # Per entry: its header and padding, and up to MAX_META_RUN extended headers with theirs.
    ENTRY_OVERHEAD = (1 + MAX_META_RUN) * 2 * BLOCK
    FILE_TYPES = ["0", "\0", "7"].freeze
    REFUSED = {
      "1" => "a hard link", "2" => "a symbolic link", "3" => "a character device",
      "4" => "a block device", "6" => "a FIFO", "S" => "a sparse file", "V" => "a volume header",
      "M" => "a multi-volume continuation"
    }.freeze

    attr_reader :files

    def initialize(root, max_bytes, max_entries)
      @root = root
      @max_bytes = max_bytes
      @max_entries = max_entries
      @buf = +"".b
      @state = :header
      @entries = 0
      @files = 0
      @bytes = 0
      @seen = {}
      @pax = {}
      @long_name = nil
      @out = nil
      @meta = nil
      @left = 0
      @pad = 0
      @meta_run = 0
      @meta_total = 0
      @trailing = 0
      @inflated = 0
      # Every decompressed byte is counted: nothing a well-formed archive within the caps holds
      # comes near this, whatever the entries' types.
      @max_inflated = max_bytes + (max_entries * ENTRY_OVERHEAD) + MAX_META_TOTAL + MAX_TRAILING + (2 * BLOCK)
    end

    def ended?
      @state == :end
    end

    def <<(data)
      @inflated += data.bytesize
      if @inflated > @max_inflated
        raise ArchiveUnsafe, "archive: decompresses to more than #{@max_inflated} bytes " \
                             "(FIZZ_MAX_PACKAGE_BYTES plus headers)"
      end
      return trail(data.bytesize) if @state == :end
      @buf << data
      loop do
        case @state
        when :header
          break if @buf.bytesize < BLOCK
          header(@buf.slice!(0, BLOCK))
        when :data
          break if @buf.empty? && @left.positive?
          piece = @buf.slice!(0, @left)
          @left -= piece.bytesize
          @meta ? @meta << piece : @out&.write(piece)
          finish_entry if @left.zero?
        when :pad
          n = [@pad, @buf.bytesize].min
          @buf.slice!(0, n)
          @pad -= n
          break if @pad.positive?
          @state = :header
        when :end
          trail(@buf.bytesize)
          @buf.clear
          break
        end
      end
    end

    # The body is complete: the archive must have ended cleanly.
    def finish
      return if @state == :end || (@state == :header && @buf.empty? && @entries.positive?)
      raise ArchiveUnsafe, "archive: not a gzip'd tar (it ends in the middle of an entry)"
    end

    def close
      @out&.close
      @out = nil
    end

    private

    def trail(bytes)
      @trailing += bytes
      raise ArchiveUnsafe, "archive: more than #{MAX_TRAILING} bytes after its end" if @trailing > MAX_TRAILING
    end

    def header(block)
      if block == ZERO_BLOCK
        @state = :end
        return
      end
      verify_checksum(block)
      type = block[156]
      size = number(block[124, 12])
      name = cstr(block[0, 100])
      # Only POSIX ustar has a prefix there; GNU's "ustar  " magic keeps atime and ctime in it.
      prefix = block[257, 8] == "ustar\x0000" ? cstr(block[345, 155]) : ""
      case type
      when "x", "g", "L", "K"
        raise ArchiveUnsafe, "archive: an extended header over #{MAX_META} bytes" if size > MAX_META
        @meta_run += 1
        @meta_total += size
        raise ArchiveUnsafe, "archive: more than #{MAX_META_RUN} extended headers before an entry" if @meta_run > MAX_META_RUN
        raise ArchiveUnsafe, "archive: extended headers over #{MAX_META_TOTAL} bytes in all" if @meta_total > MAX_META_TOTAL
        @meta = +"".b
        @meta_type = type
        start_data(size)
        return
      end
      # A pax header's path and size are the next entry's (and only its).
      full = @pax["path"] || @long_name || (prefix.empty? ? name : "#{prefix}/#{name}")
      pax_size = @pax["size"]
      @pax = {}
      @long_name = nil
      @meta_run = 0
      # Two sizes for one entry: readers that trust the other one see different entries (data
      # that one of them reads as headers), so neither is trusted.
      if pax_size && (!pax_size.match?(/\A\d+\z/) || Integer(pax_size, 10) != size)
        quoted = JSON.generate(full.dup.force_encoding("UTF-8").scrub)
        raise ArchiveUnsafe, "entry #{quoted}: its pax size #{pax_size.inspect} disagrees with its header's #{size}"
      end
      entry(type, full, size, number(block[100, 8]))
    end

    def entry(type, full, size, mode)
      quoted = JSON.generate(full.dup.force_encoding("UTF-8").scrub)
      @entries += 1
      raise ArchiveUnsafe, "entry #{quoted}: more than #{@max_entries} entries" if @entries > @max_entries
      raise ArchiveUnsafe, "entry #{quoted}: #{REFUSED[type]}" if REFUSED.key?(type)
      is_file = FILE_TYPES.include?(type)
      raise ArchiveUnsafe, "entry #{quoted}: unknown entry type #{type.inspect}" unless is_file || type == "5"
      parts = clean(full, quoted)
      # A directory's data would be inflated only to be dropped: a bomb that no cap counts.
      raise ArchiveUnsafe, "entry #{quoted}: a directory with #{size} bytes of data" if !is_file && size.positive?
      if parts.empty? # the root itself ("./")
        raise ArchiveUnsafe, "entry #{quoted}: a file cannot be the package's root" if is_file
        return start_data(0)
      end
      make_parents(parts, quoted)
      rel = parts.join("/")
      seen = @seen[rel]
      raise ArchiveUnsafe, "entry #{quoted}: repeats an earlier entry" if seen == :file || seen == :dir
      raise ArchiveUnsafe, "entry #{quoted}: a file where an earlier entry made a directory" if seen && is_file
      path = File.join(@root, rel)
      if is_file
        @bytes += size
        raise ArchiveUnsafe, "entry #{quoted}: the package's files are over #{@max_bytes} bytes" if @bytes > @max_bytes
        @seen[rel] = :file
        @files += 1
        flags = File::WRONLY | File::CREAT | File::EXCL | File::NOFOLLOW | File::BINARY
        @out = File.open(path, flags, (mode & 0o100).zero? ? 0o600 : 0o700)
      else
        Dir.mkdir(path, 0o700) unless seen
        @seen[rel] = :dir
      end
      start_data(size)
    rescue Errno::ENAMETOOLONG, Errno::EEXIST, Errno::ENOTDIR, Errno::EISDIR, Errno::ELOOP => e
      raise ArchiveUnsafe, "entry #{quoted}: cannot be written (#{e.message})"
    end

    def start_data(size)
      @left = size
      @pad = (BLOCK - (size % BLOCK)) % BLOCK
      @state = :data
      finish_entry if size.zero?
    end

    def finish_entry
      close
      if @meta
        meta = @meta
        @meta = nil
        case @meta_type
        when "x" then @pax = parse_pax(meta)
        when "L" then @long_name = cstr(meta)
        end
      end
      @state = @pad.positive? ? :pad : :header
    end

    def clean(full, quoted)
      raise ArchiveUnsafe, "entry #{quoted}: an empty path" if full.empty?
      raise ArchiveUnsafe, "entry #{quoted}: a NUL byte in its path" if full.include?("\0")
      raise ArchiveUnsafe, "entry #{quoted}: a backslash in its path" if full.include?("\\")
      raise ArchiveUnsafe, "entry #{quoted}: an absolute path" if full.start_with?("/")
      parts = full.split("/").reject { |p| p.empty? || p == "." }
      raise ArchiveUnsafe, "entry #{quoted}: path escapes the archive root" if parts.include?("..")
      parts
    end

    def make_parents(parts, quoted)
      parts[0...-1].each_index do |i|
        dir = parts[0..i].join("/")
        case @seen[dir]
        when :file
          raise ArchiveUnsafe, "entry #{quoted}: passes through the file #{JSON.generate(dir)}"
        when nil
          Dir.mkdir(File.join(@root, dir), 0o700)
          @seen[dir] = :implicit
        end
      end
    end

    def verify_checksum(block)
      stored = block[148, 8].delete("\0 ").strip
      expected = block.sum(0) - block[148, 8].sum(0) + 8 * 32
      # sum(0) is a plain byte sum: String#sum with 0 bits does not truncate.
      return if stored.match?(/\A[0-7]+\z/) && stored.to_i(8) == expected
      raise ArchiveUnsafe, "archive: not a gzip'd tar (bad header checksum)"
    end

    # Octal, or GNU base-256 (high bit set) for big values.
    def number(field)
      if field.getbyte(0) & 0x80 != 0
        raise ArchiveUnsafe, "archive: a negative size" if field.getbyte(0) & 0x40 != 0
        return field.bytes.drop(1).inject(field.getbyte(0) & 0x3f) { |acc, b| (acc << 8) | b }
      end
      digits = field.delete("\0 ")
      raise ArchiveUnsafe, "archive: not a gzip'd tar (bad number in a header)" unless digits.match?(/\A[0-7]*\z/)
      digits.to_i(8)
    end

    def cstr(bytes)
      bytes.split("\0", 2).first.to_s
    end

    # "<len> key=value\n" records.
    def parse_pax(data)
      out = {}
      until data.empty?
        len_s, rest = data.split(" ", 2)
        len = len_s.to_i
        raise ArchiveUnsafe, "archive: a malformed pax header" if !len_s.match?(/\A\d+\z/) || len <= len_s.bytesize || rest.nil?
        record = data.byteslice(0, len)
        data = data.byteslice(len..) || "".b
        key, value = record.byteslice(len_s.bytesize + 1..).chomp("\n").split("=", 2)
        raise ArchiveUnsafe, "archive: a malformed pax header" if value.nil?
        out[key] = value
      end
      out
    end
  end

  # Streams an archive body (after the JSON line) through gunzip and the tar reader into `dir`
  # while hashing every byte. After a refusal the rest is still read and hashed, so a tampered
  # archive is reported as a digest mismatch rather than as whatever its damage looks like.
  class ArchiveReceiver
    INFLATE_SLICE = 16 * 1024 # bounds what one inflate call can expand to in memory

    attr_reader :refusal

    def initialize(dir, max_bytes, max_entries)
      @tar = TarExtractor.new(dir, max_bytes, max_entries)
      @inflater = Zlib::Inflate.new(Zlib::MAX_WBITS + 16)
      @sha = Digest::SHA256.new
      @refusal = nil
    end

    def <<(bytes)
      @sha << bytes
      return if @refusal || @inflater.finished?
      offset = 0
      while offset < bytes.bytesize && !@inflater.finished?
        @inflater.inflate(bytes.byteslice(offset, INFLATE_SLICE)) { |out| @tar << out }
        offset += INFLATE_SLICE
      end
    rescue Zlib::Error => e
      refuse(ArchiveUnsafe.new("archive: not a gzip'd tar (#{e.message})"))
    rescue ArchiveUnsafe => e
      refuse(e)
    end

    def finish
      return if @refusal
      raise ArchiveUnsafe, "archive: not a gzip'd tar (the gzip stream is incomplete)" unless @inflater.finished?
      @tar.finish
    rescue ArchiveUnsafe => e
      refuse(e)
    ensure
      @tar.close
    end

    def digest
      "sha256:#{@sha.hexdigest}"
    end

    def files
      @tar.files
    end

    private

    def refuse(error)
      @refusal = error
      @tar.close
    end
  end
end
