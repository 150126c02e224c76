// Validation of POST /v2/specialize (docs/runtime-contract.md): the JSON body of the single-file
// form and the JSON line heading the archive form. The first problem found is reported with the
// JSON path of the field at fault; secret values are never echoed.
using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;

namespace Fizz.Dotnet
{
    internal sealed class FunctionRefSpec
    {
        public string Namespace;
        public string Name;
        public long Revision;
    }

    internal sealed class SpecializeSpec
    {
        public string InstanceId;
        public FunctionRefSpec Function;
        public string Entrypoint;
        public int Concurrency;
        public readonly Dictionary<string, string> Env = new Dictionary<string, string>();
        public readonly Dictionary<string, Dictionary<string, byte[]>> Secrets = new Dictionary<string, Dictionary<string, byte[]>>();
        public readonly Dictionary<string, Dictionary<string, byte[]>> Configmaps = new Dictionary<string, Dictionary<string, byte[]>>();
        public string Digest;
        // The single-file form only.
        public string Filename;
        public byte[] Code;
    }

    internal sealed class ValidationError : Exception
    {
        public readonly string Field;
        public ValidationError(string field, string message) : base(field + ": " + message) { Field = field; }
    }

    internal static class Validate
    {
        public const int DefaultConcurrency = 50;
        private const int MaxConcurrency = 10000;
        private static readonly Regex Filename = new Regex(@"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.cs$");
        private static readonly Regex Base64 = new Regex(@"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$");
        // `Class`, `Method`, `Namespace.Class` or `Class.Method`: C# identifiers joined by dots.
        private static readonly Regex Entrypoint = new Regex(@"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$");
        private static readonly Regex EnvName = new Regex(@"^[A-Za-z_][A-Za-z0-9_]*$");
        private static readonly Regex DigestPattern = new Regex(@"^sha256:[0-9a-f]{64}$");
        private static readonly Regex ConfigName = new Regex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$");
        private static readonly Regex ConfigKey = new Regex(@"^[A-Za-z0-9._-]{1,253}$");

        private static ValidationError Fail(string field, string message)
        {
            return new ValidationError(field, message);
        }

        public static SpecializeSpec JsonForm(object body)
        {
            var spec = Common(body);
            var obj = (Dictionary<string, object>)body;
            var filename = Get(obj, "filename") as string;
            if (filename == null || !Filename.IsMatch(filename))
                throw Fail("filename", "must be a file name (no directory) ending in .cs");
            var code = Get(obj, "code") as string;
            if (code == null || !Base64.IsMatch(code)) throw Fail("code", "must be the file's content in base64");
            var digest = Get(obj, "digest");
            if (digest != null)
            {
                var d = digest as string;
                if (d == null || !DigestPattern.IsMatch(d)) throw Fail("digest", "must be sha256:<64 lowercase hex digits>");
                spec.Digest = d;
            }
            spec.Filename = filename;
            spec.Code = Convert.FromBase64String(code);
            return spec;
        }

        public static SpecializeSpec ArchiveForm(object body)
        {
            var spec = Common(body);
            var obj = (Dictionary<string, object>)body;
            if (obj.ContainsKey("code")) throw Fail("code", "not allowed: the code is the archive that follows");
            if (obj.ContainsKey("filename")) throw Fail("filename", "not allowed with an archive");
            var digest = Get(obj, "digest") as string;
            if (digest == null || !DigestPattern.IsMatch(digest))
                throw Fail("digest", "is required: sha256:<64 lowercase hex digits> of the archive");
            spec.Digest = digest;
            return spec;
        }

        private static object Get(Dictionary<string, object> obj, string key)
        {
            object value;
            return obj.TryGetValue(key, out value) ? value : null;
        }

        private static SpecializeSpec Common(object body)
        {
            var obj = body as Dictionary<string, object>;
            if (obj == null) throw Fail("body", "must be a JSON object");
            var spec = new SpecializeSpec();
            if (obj.ContainsKey("instanceId"))
            {
                var id = obj["instanceId"] as string;
                if (id == null || id.Length == 0) throw Fail("instanceId", "must be a non-empty string");
                spec.InstanceId = id;
            }
            var fn = Get(obj, "function") as Dictionary<string, object>;
            if (fn == null) throw Fail("function", "must be an object {namespace, name, revision}");
            var ns = Get(fn, "namespace") as string;
            if (string.IsNullOrEmpty(ns)) throw Fail("function.namespace", "must be a non-empty string");
            var name = Get(fn, "name") as string;
            if (string.IsNullOrEmpty(name)) throw Fail("function.name", "must be a non-empty string");
            // The namespace names a directory under FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR.
            if (!ConfigName.IsMatch(ns)) throw Fail("function.namespace", "must be a namespace name");
            var revision = Get(fn, "revision");
            if (!(revision is long) || (long)revision < 0 || (long)revision > 9007199254740991L)
                throw Fail("function.revision", "must be a non-negative integer");
            spec.Function = new FunctionRefSpec { Namespace = ns, Name = name, Revision = (long)revision };

            var entrypoint = Get(obj, "entrypoint");
            if (entrypoint != null && !"".Equals(entrypoint))
            {
                var e = entrypoint as string;
                if (e == null || !Entrypoint.IsMatch(e))
                    throw Fail("entrypoint", "must be 'Class', 'Method', 'Namespace.Class' or 'Class.Method'");
                spec.Entrypoint = e;
            }
            var concurrency = Get(obj, "concurrency");
            spec.Concurrency = DefaultConcurrency;
            if (concurrency != null)
            {
                if (!(concurrency is long) || (long)concurrency < 1 || (long)concurrency > MaxConcurrency)
                    throw Fail("concurrency", "must be an integer between 1 and " + MaxConcurrency);
                spec.Concurrency = (int)(long)concurrency;
            }
            var env = Get(obj, "env");
            if (env != null)
            {
                var envObj = env as Dictionary<string, object>;
                if (envObj == null) throw Fail("env", "must be an object of strings");
                foreach (var kv in envObj)
                {
                    if (!EnvName.IsMatch(kv.Key)) throw Fail("env." + kv.Key, "is not a valid variable name");
                    var value = kv.Value as string;
                    if (value == null) throw Fail("env." + kv.Key, "must be a string");
                    spec.Env[kv.Key] = value;
                }
            }
            ConfigData(Get(obj, "secrets"), "secrets", spec.Secrets);
            ConfigData(Get(obj, "configmaps"), "configmaps", spec.Configmaps);
            return spec;
        }

        /// <summary>`{name: {key: base64}}`; messages name the field, never a value.</summary>
        private static void ConfigData(object data, string field, Dictionary<string, Dictionary<string, byte[]>> into)
        {
            if (data == null) return;
            var obj = data as Dictionary<string, object>;
            if (obj == null) throw Fail(field, "must be an object {name: {key: base64}}");
            foreach (var entry in obj)
            {
                if (!ConfigName.IsMatch(entry.Key)) throw Fail(field + "." + entry.Key, "is not a valid name");
                var keys = entry.Value as Dictionary<string, object>;
                if (keys == null) throw Fail(field + "." + entry.Key, "must be an object {key: base64}");
                var values = new Dictionary<string, byte[]>();
                foreach (var kv in keys)
                {
                    var path = field + "." + entry.Key + "." + kv.Key;
                    if (!ConfigKey.IsMatch(kv.Key) || kv.Key == "." || kv.Key == "..")
                        throw Fail(path, "is not a valid key (letters, digits, '-', '_', '.')");
                    var value = kv.Value as string;
                    if (value == null || !Base64.IsMatch(value)) throw Fail(path, "must be base64");
                    values[kv.Key] = Convert.FromBase64String(value);
                }
                into[entry.Key] = values;
            }
        }

        public static bool ValidDigest(string digest)
        {
            return digest != null && DigestPattern.IsMatch(digest);
        }
    }
}
