// The runtime's HTTP messages: a parsed request, a response to write, and the errors the runtime
// answers itself in the platform's shape.
using System;
using System.Collections.Generic;
using System.Text;

namespace Fizz.Dotnet
{
    /// <summary>A request the runtime answers itself; Close when the connection's framing can no
    /// longer be trusted (a body cut short or left unread).</summary>
    internal sealed class HttpError : Exception
    {
        public readonly int Status;
        public readonly string Code;
        public readonly bool Close;
        public readonly string Field;
        public readonly bool Retryable;

        public HttpError(int status, string code, string message, bool close = false, string field = null, bool retryable = false)
            : base(message)
        {
            Status = status;
            Code = code;
            Close = close;
            Field = field;
            Retryable = retryable;
        }
    }

    internal sealed class HttpRequest
    {
        public string Method;
        public string Target;
        public bool Http10;
        public readonly List<KeyValuePair<string, string>> Headers = new List<KeyValuePair<string, string>>();
        public long ContentLength = -1;
        public bool Chunked;
        public bool KeepAlive = true;
        public bool ExpectContinue;

        public string Header(string name)
        {
            string found = null;
            foreach (var h in Headers)
            {
                if (!string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)) continue;
                found = found == null ? h.Value : found + ", " + h.Value;
            }
            return found;
        }

        public bool HasBody { get { return Chunked || ContentLength > 0; } }

        public string Path
        {
            get
            {
                var q = Target.IndexOf('?');
                return q < 0 ? Target : Target.Substring(0, q);
            }
        }
    }

    internal sealed class HttpResponse
    {
        public int Status = 200;
        public readonly List<KeyValuePair<string, string>> Headers = new List<KeyValuePair<string, string>>();
        public byte[] Body = new byte[0];
        public bool Close;

        public HttpResponse Set(string name, string value)
        {
            Headers.Add(new KeyValuePair<string, string>(name, value));
            return this;
        }

        public static HttpResponse Json(int status, string json)
        {
            var res = new HttpResponse { Status = status, Body = Encoding.UTF8.GetBytes(json) };
            return res.Set("Content-Type", "application/json; charset=utf-8");
        }

        /// <summary>The platform's error shape: {"error":{"code","message","retryable","field"?}}.</summary>
        public static HttpResponse Error(int status, string code, string message, string field = null, bool retryable = false)
        {
            var sb = new StringBuilder("{\"error\":{\"code\":");
            Fission.DotNetCore.Api.FizzJson.WriteString(sb, code);
            sb.Append(",\"message\":");
            Fission.DotNetCore.Api.FizzJson.WriteString(sb, message);
            sb.Append(",\"retryable\":").Append(retryable ? "true" : "false");
            if (field != null)
            {
                sb.Append(",\"field\":");
                Fission.DotNetCore.Api.FizzJson.WriteString(sb, field);
            }
            sb.Append("}}");
            return Json(status, sb.ToString());
        }

        public static HttpResponse From(HttpError e)
        {
            var res = Error(e.Status, e.Code, e.Message, e.Field, e.Retryable);
            res.Close = e.Close;
            return res;
        }
    }
}
