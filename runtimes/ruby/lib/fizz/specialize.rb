# frozen_string_literal: true

require "fileutils"

module Fizz
  class ValidationError < StandardError
    attr_reader :field

    def initialize(field, message)
      super("#{field}: #{message}")
      @field = field
    end
  end

  # POST /v2/specialize, both forms: validation, digest, secrets and configmaps as files, the
  # function's environment, then its code (docs/runtime-contract.md).
  class Specializer
    ARCHIVE_CONTENT_TYPE = "application/vnd.fizz.specialize+tar"
    MAX_JSON_LINE_BYTES = 4 * 1024 * 1024
    # A bare file name: no directory part and no leading dot, so writing it never leaves the workdir.
    FILENAME = /\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.rb\z/.freeze
    # Strict, padded base64 without line breaks (what the registry sends).
    BASE64 = %r{\A(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\z}.freeze
    # "fn" or "file.fn"; in a package the file part may name a subdirectory: "lib/app.fn".
    ENTRYPOINT = /\A(?:[A-Za-z0-9_][A-Za-z0-9_.-]*\.)?[A-Za-z_][A-Za-z0-9_]*\z/.freeze
    PACKAGE_ENTRYPOINT = %r{\A(?:[A-Za-z0-9_][A-Za-z0-9_./-]*\.)?[A-Za-z_][A-Za-z0-9_]*\z}.freeze
    # Secret/configmap names and keys become directory and file names: Kubernetes' own character
    # sets, which exclude '/', and never "." or "..".
    CONFIG_NAME = /\A[A-Za-z0-9][A-Za-z0-9._-]{0,252}\z/.freeze
    CONFIG_KEY = /\A[A-Za-z0-9._-]{1,253}\z/.freeze
    ENV_NAME = /\A[A-Za-z_][A-Za-z0-9_]*\z/.freeze
    DIGEST = /\Asha256:[0-9a-f]{64}\z/.freeze
    MAX_CONCURRENCY = 10_000

    def initialize(instance)
      @rt = instance
    end

    # The JSON form; `raw` is the whole body. Returns [status, payload].
    def specialize_json(raw)
      body = begin
        JSON.parse(raw.force_encoding("UTF-8"))
      rescue JSON::ParserError, EncodingError
        return [400, Fizz.error_payload("VALIDATION_FAILED", "body: must be JSON", field: "body")]
      end
      spec = validate(body)
      if spec[:digest]
        actual = "sha256:#{Digest::SHA256.hexdigest(spec[:code])}"
        if actual != spec[:digest]
          message = "code: hashes to #{actual}, not #{spec[:digest]}; not loaded"
          return [400, Fizz.error_payload("DIGEST_MISMATCH", message, field: "digest")]
        end
      end
      refused = misdirected(spec) || @rt.claim
      return refused if refused
      directory = workdir
      activate(spec, directory, directory, spec[:filename]) do
        Loader.load_file(directory, spec[:filename], spec[:code], spec[:entrypoint])
      end
    rescue ValidationError => e
      [400, Fizz.error_payload("VALIDATION_FAILED", e.message, field: e.field)]
    end

    # The archive form: `body` is an Http::Body positioned at its start. Returns
    # [status, payload, close]: close when the body was not read to its end.
    def specialize_archive(body)
      line, rest = first_line(body)
      spec = begin
        validate_archive(JSON.parse(line.force_encoding("UTF-8")))
      rescue JSON::ParserError, EncodingError
        return [400, Fizz.error_payload("VALIDATION_FAILED", "body: the first line must be JSON", field: "body"), true]
      end
      refused = misdirected(spec) || @rt.claim
      return [*refused, true] if refused
      root = workdir
      dir = File.join(root, "fn")
      begin
        Dir.mkdir(dir, 0o700)
      rescue Errno::EEXIST
        @rt.state = "warm" # not ours to remove: something was extracted here before
        message = "this instance's fn/ directory already exists; an instance is specialized once"
        return [409, Fizz.error_payload("ALREADY_SPECIALIZED", message), true]
      end
      receiver = ArchiveReceiver.new(dir, @rt.max_package_bytes, @rt.max_package_entries)
      begin
        receive(body, receiver, rest)
      rescue Http::Error => e
        back_to_warm(dir)
        return [e.status, Fizz.error_payload(e.code, e.message), e.close]
      rescue Exception # rubocop:disable Lint/RescueException -- the client went away, or worse
        back_to_warm(dir)
        raise
      end
      if receiver.digest != spec[:digest]
        back_to_warm(dir)
        message = "archive: hashes to #{receiver.digest}, not #{spec[:digest]}; not loaded"
        return [400, Fizz.error_payload("DIGEST_MISMATCH", message, field: "digest"), false]
      end
      if receiver.refusal
        back_to_warm(dir)
        return [400, Fizz.error_payload("ARCHIVE_UNSAFE", receiver.refusal.message, field: "archive"), false]
      end
      answer = activate(spec, root, dir, "package, #{receiver.files} files") do
        # Relative paths in the package (data files, templates) resolve from the package.
        Dir.chdir(dir)
        Loader.load_package(dir, spec[:entrypoint])
      end
      [*answer, false]
    rescue ValidationError => e
      [400, Fizz.error_payload("VALIDATION_FAILED", e.message, field: e.field), true]
    end

    private

    # The JSON line (at most 4 MiB, ended by "\n") and what came after it in the same piece.
    def first_line(body)
      buf = +"".b
      loop do
        i = buf.index("\n")
        if i
          raise ValidationError.new("body", "the first line is over 4 MiB") if i > MAX_JSON_LINE_BYTES
          return [buf.byteslice(0, i), buf.byteslice(i + 1..)]
        end
        raise ValidationError.new("body", "the first line is over 4 MiB") if buf.bytesize > MAX_JSON_LINE_BYTES
        piece = body.read_piece
        raise ValidationError.new("body", "must start with one line of JSON ended by \\n") if piece.nil?
        buf << piece
      end
    end

    def receive(body, receiver, rest)
      total = rest.bytesize
      check_size(total)
      receiver << rest unless rest.empty?
      while (piece = body.read_piece)
        total += piece.bytesize
        check_size(total)
        receiver << piece
      end
      receiver.finish
    end

    def check_size(total)
      return if total <= @rt.max_package_bytes
      raise Http::Error.new(413, "PAYLOAD_TOO_LARGE",
                            "archive: over FIZZ_MAX_PACKAGE_BYTES (#{@rt.max_package_bytes} bytes)", close: true)
    end

    def back_to_warm(dir)
      FileUtils.rm_rf(dir)
      @rt.state = "warm"
    end

    def workdir
      dir = @rt.workdir || fresh_directory
      FileUtils.mkdir_p(dir, mode: 0o700)
      dir
    end

    # A private, unguessable directory under TMPDIR.
    def fresh_directory
      base = ENV["TMPDIR"].to_s.empty? ? "/tmp" : ENV["TMPDIR"]
      loop do
        path = File.join(base, "fizz-fn-#{Random.urandom(8).unpack1('H*')}")
        begin
          Dir.mkdir(path, 0o700)
          return path
        rescue Errno::EEXIST
          next
        end
      end
    end

    def misdirected(spec)
      id = spec[:instance_id]
      return nil unless id && @rt.instance_id && id != @rt.instance_id
      [421, Fizz.error_payload("MISDIRECTED", "this is instance #{@rt.instance_id}, not #{id}", retryable: true)]
    end

    # The end of every specialize, once the code is in place and checked: secrets and configmaps
    # as files, the function's environment, then its code.
    def activate(spec, workdir, code_dir, what)
      ref = spec[:function]
      label = "#{ref['namespace']}/#{ref['name']}@#{ref['revision']}"
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      begin
        secrets_dir = @rt.secrets_dir || File.join(workdir, "secrets")
        configs_dir = @rt.configs_dir || File.join(workdir, "configs")
        write_config_files(secrets_dir, ref["namespace"], spec[:secrets])
        write_config_files(configs_dir, ref["namespace"], spec[:configmaps])
        # In place before the code's top level runs; the directories last, so `env` cannot
        # point them elsewhere.
        ENV.update(spec[:env])
        ENV["FIZZ_SECRETS_DIR"] = secrets_dir
        ENV["FIZZ_CONFIGS_DIR"] = configs_dir
        fn, takes_context = yield
      rescue FunctionLoadError => e
        @rt.state = "failed"
        Fizz.log("#{label} failed to load: #{e.message}")
        return [500, Fizz.error_payload("FUNCTION_LOAD_FAILED", e.message)]
      rescue StandardError => e
        @rt.state = "failed"
        Fizz.log("#{label}: specialize failed: #{e.class}: #{e.message}\n#{Array(e.backtrace).join("\n")}")
        return [500, Fizz.error_payload("INTERNAL", "specialize failed: #{e.message}", retryable: true)]
      end
      @rt.install(fn, takes_context, ref, spec[:concurrency], code_dir, spec[:filename] || "package")
      load_ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round(1)
      Fizz.log("specialized #{label} (#{what}) in #{load_ms}ms")
      [200, { "status" => "specialized", "loadMs" => load_ms }]
    end

    # <base>/<namespace>/<name>/<key>, files 0400, directories 0700 (not 0500: whoever removes
    # the instance's directory must be able to unlink them). Names and keys were validated.
    def write_config_files(base, namespace, data)
      data.each do |name, keys|
        dir = File.join(base, namespace, name)
        FileUtils.mkdir_p(dir, mode: 0o700)
        keys.each do |key, value|
          flags = File::WRONLY | File::CREAT | File::EXCL | File::NOFOLLOW | File::BINARY
          File.open(File.join(dir, key), flags, 0o400) { |f| f.write(value) }
        end
      end
    end

    def validate(body)
      spec = validate_common(body, ENTRYPOINT, "'fn' or 'file.fn'")
      filename = body["filename"]
      unless filename.is_a?(String) && filename.match?(FILENAME)
        raise ValidationError.new("filename", "must be a file name (no directory) ending in .rb")
      end
      code = body["code"]
      unless code.is_a?(String) && code.match?(BASE64)
        raise ValidationError.new("code", "must be the file's content in base64")
      end
      digest = body["digest"]
      if !digest.nil? && !(digest.is_a?(String) && digest.match?(DIGEST))
        raise ValidationError.new("digest", "must be sha256:<64 lowercase hex digits>")
      end
      spec.merge(filename: filename, code: code.unpack1("m0"), digest: digest)
    end

    def validate_archive(body)
      what = "'fn' or 'file.fn' (file may name a subdirectory: 'lib/app.fn')"
      spec = validate_common(body, PACKAGE_ENTRYPOINT, what)
      raise ValidationError.new("code", "not allowed: the code is the archive that follows") if body.key?("code")
      raise ValidationError.new("filename", "not allowed with an archive") if body.key?("filename")
      digest = body["digest"]
      unless digest.is_a?(String) && digest.match?(DIGEST)
        raise ValidationError.new("digest", "is required: sha256:<64 lowercase hex digits> of the archive")
      end
      entrypoint = spec[:entrypoint]
      if entrypoint&.include?(".")
        file_part = entrypoint.rpartition(".").first
        if file_part.split("/", -1).any? { |p| ["", ".", ".."].include?(p) }
          raise ValidationError.new("entrypoint", "must name a file inside the package")
        end
      end
      spec.merge(digest: digest)
    end

    def validate_common(body, pattern, form)
      raise ValidationError.new("body", "must be a JSON object") unless body.is_a?(Hash)
      instance_id = body["instanceId"]
      if !instance_id.nil? && !(instance_id.is_a?(String) && !instance_id.empty?)
        raise ValidationError.new("instanceId", "must be a non-empty string")
      end
      fn = body["function"]
      raise ValidationError.new("function", "must be an object {namespace, name, revision}") unless fn.is_a?(Hash)
      %w[namespace name].each do |key|
        unless fn[key].is_a?(String) && !fn[key].empty?
          raise ValidationError.new("function.#{key}", "must be a non-empty string")
        end
      end
      # The namespace names a directory under FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR.
      raise ValidationError.new("function.namespace", "must be a namespace name") unless fn["namespace"].match?(CONFIG_NAME)
      unless fn["revision"].is_a?(Integer) && fn["revision"] >= 0
        raise ValidationError.new("function.revision", "must be a non-negative integer")
      end
      entrypoint = body["entrypoint"]
      if entrypoint.nil? || entrypoint == ""
        entrypoint = nil
      elsif !(entrypoint.is_a?(String) && entrypoint.match?(pattern))
        raise ValidationError.new("entrypoint", "must be #{form}")
      end
      concurrency = body["concurrency"]
      if concurrency.nil?
        concurrency = DEFAULT_CONCURRENCY
      elsif !(concurrency.is_a?(Integer) && concurrency.between?(1, MAX_CONCURRENCY))
        raise ValidationError.new("concurrency", "must be an integer between 1 and #{MAX_CONCURRENCY}")
      end
      env = body["env"] || {}
      raise ValidationError.new("env", "must be an object of strings") unless env.is_a?(Hash)
      env.each do |key, value|
        raise ValidationError.new("env.#{key}", "is not a valid variable name") unless key.match?(ENV_NAME)
        raise ValidationError.new("env.#{key}", "must be a string") unless value.is_a?(String)
      end
      {
        instance_id: instance_id,
        function: { "namespace" => fn["namespace"], "name" => fn["name"], "revision" => fn["revision"] },
        entrypoint: entrypoint, concurrency: concurrency, env: env,
        secrets: config_data(body["secrets"], "secrets"),
        configmaps: config_data(body["configmaps"], "configmaps")
      }
    end

    # {name: {key: base64}}. Messages name the field, never a value: these are secrets.
    def config_data(data, field)
      return {} if data.nil?
      raise ValidationError.new(field, "must be an object {name: {key: base64}}") unless data.is_a?(Hash)
      data.to_h do |name, keys|
        raise ValidationError.new("#{field}.#{name}", "is not a valid name") unless name.match?(CONFIG_NAME)
        raise ValidationError.new("#{field}.#{name}", "must be an object {key: base64}") unless keys.is_a?(Hash)
        values = keys.to_h do |key, value|
          if !key.match?(CONFIG_KEY) || [".", ".."].include?(key)
            raise ValidationError.new("#{field}.#{name}.#{key}", "is not a valid key (letters, digits, '-', '_', '.')")
          end
          unless value.is_a?(String) && value.match?(BASE64)
            raise ValidationError.new("#{field}.#{name}.#{key}", "must be base64")
          end
          [key, value.unpack1("m0")]
        end
        [name, values]
      end
    end
  end
end
