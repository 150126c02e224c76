// The API a C# function compiles against: Fission's FissionContext (the shape of Fission's dotnet
// environment, so its examples compile unmodified) plus what Fizz adds (method, path, query,
// lower-case headers, body bytes, JSON, route params, request id, the function's name).
using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Fission.DotNetCore.Api
{
    public class FissionContext
    {
        private readonly byte[] _body;

        public FissionContext(Dictionary<string, object> args, Logger logger, FissionHttpRequest request)
        {
            if (args == null) throw new ArgumentNullException(nameof(args));
            if (logger == null) throw new ArgumentNullException(nameof(logger));
            if (request == null) throw new ArgumentNullException(nameof(request));
            Arguments = args;
            Logger = logger;
            Request = request;
            _body = request.RawBody;
            Method = request.Method;
            Headers = new Dictionary<string, string>();
            Query = new Dictionary<string, string>();
            Params = new Dictionary<string, string>();
            Function = new FunctionRef();
            Path = "/";
            RequestId = "";
        }

        /// <summary>Fission: the query string's parameters (repeated keys joined with ",").</summary>
        public Dictionary<string, object> Arguments { get; private set; }

        public FissionHttpRequest Request { get; private set; }

        public Logger Logger { get; private set; }

        /// <summary>Fission (dotnet20): the directory the function's package was deployed to.</summary>
        public string PackagePath { get; set; }

        // Fizz's context (docs/runtime-contract.md).
        public string Method { get; set; }
        /// <summary>The path without the query string.</summary>
        public string Path { get; set; }
        /// <summary>The query string's first value per key.</summary>
        public Dictionary<string, string> Query { get; set; }
        /// <summary>Headers by lower-case name; repeated headers joined with ", ".</summary>
        public Dictionary<string, string> Headers { get; set; }
        /// <summary>Route parameters, from the gateway's X-Fizz-Params-* headers.</summary>
        public Dictionary<string, string> Params { get; set; }
        public string RequestId { get; set; }
        public FunctionRef Function { get; set; }

        /// <summary>The request body's bytes.</summary>
        public byte[] Body { get { return _body; } }

        /// <summary>The body decoded as UTF-8.</summary>
        public string Text()
        {
            return Encoding.UTF8.GetString(_body);
        }

        /// <summary>The body parsed as JSON: Dictionary&lt;string, object&gt;, List&lt;object&gt;,
        /// string, long, double, bool or null. A body that is not JSON throws InvalidBodyException,
        /// which (uncaught) answers 400 INVALID_BODY.</summary>
        public object Json()
        {
            try
            {
                return FizzJson.Parse(Text());
            }
            catch (FormatException e)
            {
                throw new InvalidBodyException("body is not JSON: " + e.Message);
            }
        }

        /// <summary>Fission (dotnet20): reads a JSON settings file of the package into a T.</summary>
        public T GetSettings<T>(string relativePath)
        {
            var file = System.IO.Path.Combine(PackagePath ?? Directory.GetCurrentDirectory(), relativePath);
            return FizzJson.Deserialize<T>(File.ReadAllText(file));
        }
    }

    public class FunctionRef
    {
        public string Namespace { get; set; }
        public string Name { get; set; }
        public long Revision { get; set; }
    }

    /// <summary>The request body is not what the function asked for: answered 400 INVALID_BODY.</summary>
    public class InvalidBodyException : Exception
    {
        public InvalidBodyException(string message) : base(message) { }
    }

    /// <summary>A response with a status and headers; any other return value is the body.
    /// Body: string (text/plain), byte[] (application/octet-stream), null (empty), else JSON.</summary>
    public class FissionResponse
    {
        public FissionResponse()
        {
            StatusCode = 200;
            Headers = new Dictionary<string, string>();
        }

        public FissionResponse(int statusCode, object body) : this()
        {
            StatusCode = statusCode;
            Body = body;
        }

        public int StatusCode { get; set; }
        public Dictionary<string, string> Headers { get; set; }
        public object Body { get; set; }
    }

    public class Logger
    {
        public void Write(Severity severity, string format, params object[] args)
        {
            var line = args == null || args.Length == 0 ? format : string.Format(format, args);
            Console.WriteLine(DateTime.Now.ToString("MM/dd/yy H:mm:ss zzz") + " " + severity + ": " + line);
        }

        public void WriteInfo(string format, params object[] args) { Write(Severity.Info, format, args); }
        public void WriteWarning(string format, params object[] args) { Write(Severity.Warning, format, args); }
        public void WriteError(string format, params object[] args) { Write(Severity.Error, format, args); }
        public void WriteCritical(string format, params object[] args) { Write(Severity.Critical, format, args); }
        public void WriteVerbose(string format, params object[] args) { Write(Severity.Verbose, format, args); }
    }

    public enum Severity
    {
        Info,
        Warning,
        Error,
        Critical,
        Verbose
    }

    public class FissionHttpRequest
    {
        private readonly MemoryStream _body;
        private readonly Dictionary<string, IEnumerable<string>> _headers;

        public FissionHttpRequest(string method, string url, Dictionary<string, IEnumerable<string>> headers, byte[] body)
        {
            Method = method;
            Url = url;
            _headers = headers;
            RawBody = body ?? new byte[0];
            _body = new MemoryStream(RawBody, false);
        }

        internal byte[] RawBody { get; private set; }

        /// <summary>The body as a readable (and seekable) stream.</summary>
        public Stream Body { get { return _body; } }

        public string BodyAsString()
        {
            return Encoding.UTF8.GetString(RawBody);
        }

        /// <summary>Headers by the name the client sent, each with its values.</summary>
        public Dictionary<string, IEnumerable<string>> Headers { get { return _headers; } }

        /// <summary>Always null: TLS ends before the instance.</summary>
        public X509Certificate Certificate { get { return null; } }
        public string Url { get; private set; }
        public string Method { get; private set; }
    }
}
