# frozen_string_literal: true

module Fizz
  # The user's code did not load; the message (file:line: Class: message) is meant for the user.
  class FunctionLoadError < StandardError; end

  # Loads the user's code at the top level, as Fission does (`load`), and finds the entry method.
  module Loader
    DEFAULT_ENTRYPOINT = "handler"

    module_function

    # One file: written as <directory>/<filename>, loaded with Kernel#load as Fission loads it.
    def load_file(directory, filename, code, entrypoint)
      path = File.join(directory, filename)
      # A new file, never through a link: the work dir may be shared (FIZZ_WORKDIR), and a link
      # planted at the name would send the code, and its load, elsewhere.
      begin
        File.open(path, File::WRONLY | File::CREAT | File::EXCL | File::NOFOLLOW | File::BINARY, 0o600) do |f|
          f.write(code)
        end
      rescue Errno::EEXIST, Errno::ELOOP => e
        raise FunctionLoadError, "#{filename}: cannot be written (#{e.message})"
      end
      label = entrypoint || DEFAULT_ENTRYPOINT
      name = label
      if label.include?(".")
        file_part, _, name = label.rpartition(".")
        unless [filename, filename.delete_suffix(".rb")].include?(file_part)
          raise FunctionLoadError,
                "#{filename}: entrypoint \"#{label}\" names \"#{file_part}\", but the code is #{filename}"
        end
      end
      run_user(directory, filename) { Kernel.load(path) }
      entry(name, label, filename)
    end

    # A package in <dir>. "file.fn" (file may name a subdirectory: "lib/app.fn") requires that
    # file; "fn" or none loads every .rb file outside vendor/, in order, as Fission's V2
    # specializer does. Either way the package's directory is first on $LOAD_PATH (require and
    # require_relative of its own files work) and vendor/bundle gems are on it too.
    def load_package(dir, entrypoint)
      $LOAD_PATH.unshift(*Dir[File.join(dir, "vendor/bundle/ruby/*/gems/*/lib")])
      $LOAD_PATH.unshift(dir)
      label = entrypoint || DEFAULT_ENTRYPOINT
      if label.include?(".")
        file_part, _, name = label.rpartition(".")
        rel = package_file(dir, file_part)
        if rel.nil?
          raise FunctionLoadError, "entrypoint \"#{label}\": the package has no #{file_part.delete_suffix('.rb')}.rb"
        end
        run_user(dir, rel) { require File.join(dir, rel) }
        return entry(name, label, rel)
      end
      files = Dir.glob("**/*.rb", base: dir).reject { |f| f.start_with?("vendor/") }.sort
      raise FunctionLoadError, "package: no .rb file to load" if files.empty?
      files.each { |rel| run_user(dir, rel) { require File.join(dir, rel) } }
      entry(label, label, "package")
    end

    def package_file(dir, file_part)
      base = file_part.delete_suffix(".rb")
      [base, base.tr(".", "/")].uniq.each do |candidate|
        rel = "#{candidate}.rb"
        return rel if File.file?(File.join(dir, rel))
      end
      nil
    end

    # Runs user code; anything it raises (SyntaxError, LoadError, exit) becomes a load failure.
    def run_user(dir, what)
      yield
    rescue Exception => e # rubocop:disable Lint/RescueException -- exit and ScriptError included
      Fizz.log("loading #{what} failed:\n#{e.class}: #{e.message}\n#{Array(e.backtrace).join("\n")}")
      raise FunctionLoadError, describe(e, dir, what)
    end

    # The entry method: a method the code defined (at the top level, as Fission's `def handler`)
    # taking the context or nothing. Returns [method, takes_context].
    def entry(name, label, where)
      main = TOPLEVEL_BINDING.receiver
      fn = begin
        main.method(name)
      rescue NameError
        nil
      end
      # Kernel's own methods (puts, exit) are not the function.
      if fn.nil? || fn.source_location.nil? || fn.owner == Kernel
        raise FunctionLoadError, "#{where}: entrypoint \"#{label}\" is not a method defined by the code"
      end
      required = fn.parameters.count { |kind, _| kind == :req }
      if required > 1 || fn.parameters.any? { |kind, _| kind == :keyreq }
        raise FunctionLoadError, "#{where}: entrypoint \"#{label}\" must take one argument (context) or none"
      end
      [fn, fn.arity != 0]
    end

    # "<file>:<line>: <Class>: <message>", the file relative to dir: the innermost frame in the
    # user's code (a package's lib/db.rb), else `what`.
    def describe(error, dir, what)
      prefixes = [File.join(dir, "")]
      real = File.join(File.realpath(dir), "") rescue nil # rubocop:disable Style/RescueModifier
      prefixes << real if real && !prefixes.include?(real)
      where = what
      message = error.message.to_s
      if error.is_a?(SyntaxError) && (m = message.lines.first.to_s.match(/\A(.+?):(\d+): (.*)/))
        file = prefixes.find { |p| m[1].start_with?(p) }
        where = "#{m[1].delete_prefix(file)}:#{m[2]}" if file
        message = m[3]
      else
        Array(error.backtrace).each do |frame|
          fm = frame.match(/\A(.+?):(\d+)(?::in |\z)/)
          next unless fm
          file = prefixes.find { |p| fm[1].start_with?(p) }
          next unless file
          where = "#{fm[1].delete_prefix(file)}:#{fm[2]}"
          break
        end
      end
      message = (message.lines.first || "").strip
      prefixes.each { |p| message = message.gsub(p, "") }
      message.empty? ? "#{where}: #{error.class}" : "#{where}: #{error.class}: #{message}"
    end
  end
end
