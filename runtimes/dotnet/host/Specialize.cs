// POST /v2/specialize (docs/runtime-contract.md): the token (before any of the body is read),
// 409 unless warm, the body or the archive form's JSON line, 421, the digest; then secrets and
// configmaps, the environment, and the package's function.dll. C# is compiled by the builder, so
// the single-file (JSON) form does every check that comes before loading and then refuses.
using System;
using System.Diagnostics;
using System.IO;
using System.Security.Cryptography;
using System.Text;

namespace Fizz.Dotnet
{
    internal static class Specialize
    {
        public const string ArchiveContentType = "application/vnd.fizz.specialize+tar";
        private const int MaxJsonLineBytes = 4 * 1024 * 1024;

        public static HttpResponse Handle(Instance instance, HttpRequest req, HttpConnection http)
        {
            var config = instance.Config;
            var t0 = Stopwatch.StartNew();
            try { return HandleInner(instance, req, http); }
            finally { if (Loader.Trace) Console.Error.WriteLine("[fizz] trace: specialize handled in " + t0.Elapsed.TotalMilliseconds); }
        }

        private static HttpResponse HandleInner(Instance instance, HttpRequest req, HttpConnection http)
        {
            var config = instance.Config;
            if (!TokenMatches(config.SpecializeToken, req.Header("x-fizz-specialize-token")))
            {
                var res = HttpResponse.Error(401, "UNAUTHENTICATED",
                    "x-fizz-specialize-token: missing or wrong; only the poolkeeper specializes", "x-fizz-specialize-token");
                res.Close = true; // the body is not read
                return res;
            }
            if (instance.State != Instance.Warm) return AlreadySpecialized(instance, true);
            var contentType = (req.Header("content-type") ?? "").Split(';')[0].Trim().ToLowerInvariant();
            return contentType == ArchiveContentType ? ArchiveForm(instance, req, http) : JsonForm(instance, http);
        }

        private static HttpResponse JsonForm(Instance instance, HttpConnection http)
        {
            var config = instance.Config;
            var raw = http.ReadAll(config.MaxBodyBytes);
            object input;
            try
            {
                input = Fission.DotNetCore.Api.FizzJson.Parse(Encoding.UTF8.GetString(raw));
            }
            catch (FormatException)
            {
                return HttpResponse.Error(400, "VALIDATION_FAILED", "body: must be JSON", "body");
            }
            SpecializeSpec spec;
            try
            {
                spec = Validate.JsonForm(input);
            }
            catch (ValidationError e)
            {
                return HttpResponse.Error(400, "VALIDATION_FAILED", e.Message, e.Field);
            }
            if (spec.Digest != null)
            {
                var actual = Sha256(spec.Code);
                if (actual != spec.Digest)
                    return HttpResponse.Error(400, "DIGEST_MISMATCH", "code: hashes to " + actual + ", not " + spec.Digest + "; not loaded", "digest");
            }
            var misdirected = Misdirected(spec, config);
            if (misdirected != null) return misdirected;
            if (!instance.BeginSpecialize()) return AlreadySpecialized(instance, false);
            string workdir;
            try
            {
                workdir = Workdir(config);
                File.WriteAllBytes(Path.Combine(workdir, spec.Filename), spec.Code);
            }
            catch (Exception e)
            {
                return Broken(instance, e);
            }
            lock (instance.Lock) instance.State = Instance.Failed;
            var message = spec.Filename + ": C# functions are compiled by the builder, not loaded from source; " +
                "deploy it as a package built by the builder: `fizz fn create --src <dir>` (or `--code " + spec.Filename +
                "`, which the CLI sends as a one-file source package)";
            config.Log("[fizz] " + Label(spec) + " failed to load: " + message);
            return HttpResponse.Error(500, "FUNCTION_LOAD_FAILED", message);
        }

        private static HttpResponse ArchiveForm(Instance instance, HttpRequest req, HttpConnection http)
        {
            var config = instance.Config;
            if (req.ContentLength > config.MaxPackageBytes + MaxJsonLineBytes + 1)
                throw new HttpError(413, "PAYLOAD_TOO_LARGE", "archive exceeds " + config.MaxPackageBytes + " bytes", true);
            var body = new BodyStream(http);
            var line = ReadLine(body);
            // Every answer before the archive is read leaves it unread: the connection closes.
            object input;
            try
            {
                input = Fission.DotNetCore.Api.FizzJson.Parse(Encoding.UTF8.GetString(line));
            }
            catch (FormatException)
            {
                return Closing(HttpResponse.Error(400, "VALIDATION_FAILED", "body: the first line must be JSON", "body"));
            }
            SpecializeSpec spec;
            try
            {
                spec = Validate.ArchiveForm(input);
            }
            catch (ValidationError e)
            {
                return Closing(HttpResponse.Error(400, "VALIDATION_FAILED", e.Message, e.Field));
            }
            var misdirected = Misdirected(spec, config);
            if (misdirected != null) return Closing(misdirected);
            if (!instance.BeginSpecialize()) return AlreadySpecialized(instance, true);

            string workdir;
            try
            {
                workdir = Workdir(config);
            }
            catch (Exception e)
            {
                return Closing(Broken(instance, e));
            }
            var dir = Path.Combine(workdir, "fn");
            ArchiveResult received;
            var ta = Stopwatch.StartNew();
            try
            {
                received = Archive.Receive(body, dir, config.MaxPackageBytes, config.MaxPackageEntries);
            }
            catch (Archive.DirectoryExists)
            {
                // Not ours to remove: something was extracted here before.
                lock (instance.Lock) instance.State = Instance.Warm;
                return Closing(HttpResponse.Error(409, "ALREADY_SPECIALIZED",
                    "this instance's fn/ directory already exists; an instance is specialized once"));
            }
            catch (Exception)
            {
                BackToWarm(instance, dir);
                throw;
            }
            if (Loader.Trace) Console.Error.WriteLine("[fizz] trace: archive received in " + ta.Elapsed.TotalMilliseconds);
            if (received.Digest != spec.Digest)
            {
                BackToWarm(instance, dir);
                return HttpResponse.Error(400, "DIGEST_MISMATCH",
                    "archive: hashes to " + received.Digest + ", not " + spec.Digest + "; not loaded", "digest");
            }
            if (received.Refusal is ArchiveUnsafe)
            {
                BackToWarm(instance, dir);
                return HttpResponse.Error(400, "ARCHIVE_UNSAFE", received.Refusal.Message, "archive");
            }
            if (received.Refusal != null)
            {
                BackToWarm(instance, dir);
                config.Log("[fizz] specialize failed: " + received.Refusal.Message);
                return HttpResponse.Error(500, "INTERNAL", "specialize failed: " + received.Refusal.Message, null, true);
            }
            return Activate(instance, spec, workdir, dir, received.Files);
        }

        /// <summary>Secrets and configmaps as files, the environment, then the code.</summary>
        private static HttpResponse Activate(Instance instance, SpecializeSpec spec, string workdir, string dir, int files)
        {
            var config = instance.Config;
            var started = Stopwatch.StartNew();
            Handler handler;
            try
            {
                var secretsDir = config.SecretsDir ?? Path.Combine(workdir, "secrets");
                var configsDir = config.ConfigsDir ?? Path.Combine(workdir, "configs");
                ConfigFiles.Write(secretsDir, spec.Function.Namespace, spec.Secrets);
                ConfigFiles.Write(configsDir, spec.Function.Namespace, spec.Configmaps);
                // The directories last, so that `env` cannot point them elsewhere.
                spec.Env["FIZZ_SECRETS_DIR"] = secretsDir;
                spec.Env["FIZZ_CONFIGS_DIR"] = configsDir;
                if (Loader.Trace) Console.Error.WriteLine("[fizz] trace: config files " + started.Elapsed.TotalMilliseconds);
                if (config.Enter != null) config.Enter(spec, dir);
                if (Loader.Trace) Console.Error.WriteLine("[fizz] trace: entered " + started.Elapsed.TotalMilliseconds);
                handler = config.Load(dir, spec);
            }
            catch (LoadError e)
            {
                lock (instance.Lock) instance.State = Instance.Failed;
                config.Log("[fizz] " + Label(spec) + " failed to load: " + e.Message);
                return HttpResponse.Error(500, "FUNCTION_LOAD_FAILED", e.Message);
            }
            catch (Exception e)
            {
                return Broken(instance, e);
            }
            lock (instance.Lock)
            {
                instance.Handler = handler;
                instance.Function = spec.Function;
                instance.Concurrency = spec.Concurrency;
                instance.Limiter = new Limiter(spec.Concurrency, spec.Concurrency);
                instance.PackagePath = dir;
                instance.State = Instance.Specialized;
            }
            var loadMs = Math.Round(started.Elapsed.TotalMilliseconds, 1);
            config.Log("[fizz] specialized " + Label(spec) + " (package, " + files + " files) in " + loadMs + "ms");
            return HttpResponse.Json(200, "{\"status\":\"specialized\",\"loadMs\":" +
                loadMs.ToString(System.Globalization.CultureInfo.InvariantCulture) + "}");
        }

        private static string Label(SpecializeSpec spec)
        {
            return spec.Function.Namespace + "/" + spec.Function.Name + "@" + spec.Function.Revision;
        }

        private static HttpResponse Closing(HttpResponse res)
        {
            res.Close = true;
            return res;
        }

        private static void BackToWarm(Instance instance, string dir)
        {
            try
            {
                if (Directory.Exists(dir)) Directory.Delete(dir, true);
            }
            catch (Exception e)
            {
                instance.Config.Log("[fizz] cannot remove " + dir + ": " + e.Message);
            }
            lock (instance.Lock) instance.State = Instance.Warm;
        }

        /// <summary>The instance cannot work (no work directory, a full disk): 500 and failed.</summary>
        private static HttpResponse Broken(Instance instance, Exception e)
        {
            lock (instance.Lock) instance.State = Instance.Failed;
            instance.Config.Log("[fizz] specialize failed: " + e);
            return HttpResponse.Error(500, "INTERNAL", "specialize failed: " + e.Message, null, true);
        }

        /// <summary>The body up to its first "\n" (at most 4 MiB); VALIDATION_FAILED otherwise.</summary>
        private static byte[] ReadLine(Stream body)
        {
            var ms = new MemoryStream();
            var one = new byte[1];
            // Byte by byte over the connection's own buffer: cheap, and nothing past the line is consumed.
            for (;;)
            {
                var n = body.Read(one, 0, 1);
                if (n == 0)
                    throw new HttpError(400, "VALIDATION_FAILED", "body: must be one line of JSON ended by \\n, then the archive", false, "body");
                if (one[0] == (byte)'\n') return ms.ToArray();
                if (ms.Length >= MaxJsonLineBytes)
                    throw new HttpError(400, "VALIDATION_FAILED", "body: the JSON line is longer than " + MaxJsonLineBytes + " bytes", true, "body");
                ms.WriteByte(one[0]);
            }
        }

        private static HttpResponse Misdirected(SpecializeSpec spec, Config config)
        {
            if (spec.InstanceId == null || config.InstanceId == null || spec.InstanceId == config.InstanceId) return null;
            return HttpResponse.Error(421, "MISDIRECTED", "this is instance " + config.InstanceId + ", not " + spec.InstanceId, null, true);
        }

        private static HttpResponse AlreadySpecialized(Instance instance, bool close)
        {
            var what = instance.State == Instance.Failed ? "failed to load its function" : "is already specialized";
            var res = HttpResponse.Error(409, "ALREADY_SPECIALIZED", "this instance " + what + "; an instance is specialized once");
            res.Close = close;
            return res;
        }

        /// <summary>FIZZ_WORKDIR (made 0700 if missing), else a fresh temp dir.</summary>
        private static string Workdir(Config config)
        {
            if (string.IsNullOrEmpty(config.Workdir))
            {
                var tmp = Path.Combine(Path.GetTempPath(), "fizz-fn-" + Guid.NewGuid().ToString("N").Substring(0, 12));
                Directory.CreateDirectory(tmp);
                Native.Chmod(tmp, Convert.ToInt32("700", 8));
                return tmp;
            }
            var dir = Path.GetFullPath(config.Workdir);
            if (!Directory.Exists(dir))
            {
                Directory.CreateDirectory(dir);
                Native.Chmod(dir, Convert.ToInt32("700", 8));
            }
            return dir;
        }

        public static string Sha256(byte[] data)
        {
            using (var sha = new SHA256Managed())
            {
                var sb = new StringBuilder("sha256:");
                foreach (var b in sha.ComputeHash(data)) sb.Append(b.ToString("x2"));
                return sb.ToString();
            }
        }

        /// <summary>Constant time: both sides hashed first, so neither length nor content leaks.
        /// No token configured (started by hand): every specialize is accepted.</summary>
        private static bool TokenMatches(string expected, string given)
        {
            if (expected == null) return true;
            if (given == null) return false;
            using (var sha = new SHA256Managed())
            {
                var a = sha.ComputeHash(Encoding.UTF8.GetBytes(expected));
                var b = sha.ComputeHash(Encoding.UTF8.GetBytes(given));
                var diff = 0;
                for (var i = 0; i < a.Length; i++) diff |= a[i] ^ b[i];
                return diff == 0;
            }
        }
    }
}
