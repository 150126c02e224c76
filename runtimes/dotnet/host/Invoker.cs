// A call of the function: the context it sees (Fission's FissionContext with Fizz's additions),
// and how its return value is answered.
using System;
using System.Collections.Generic;
using System.Text;
using Fission.DotNetCore.Api;

namespace Fizz.Dotnet
{
    internal sealed class ResultError : Exception
    {
        public ResultError(string message) : base(message) { }
    }

    internal static class Invoker
    {
        private static readonly Logger SharedLogger = new Logger();

        public static FissionContext BuildContext(HttpRequest req, byte[] body, FunctionRefSpec fn, string packagePath)
        {
            var rawHeaders = new Dictionary<string, IEnumerable<string>>(StringComparer.OrdinalIgnoreCase);
            var headers = new Dictionary<string, string>();
            var routeParams = new Dictionary<string, string>();
            foreach (var h in req.Headers)
            {
                IEnumerable<string> values;
                if (rawHeaders.TryGetValue(h.Key, out values)) ((List<string>)values).Add(h.Value);
                else rawHeaders[h.Key] = new List<string> { h.Value };
                var lower = h.Key.ToLowerInvariant();
                string existing;
                headers[lower] = headers.TryGetValue(lower, out existing) ? existing + ", " + h.Value : h.Value;
                if (lower.StartsWith("x-fizz-params-") && lower.Length > 14) routeParams[h.Key.Substring(14)] = h.Value;
            }
            // Fission's Url is absolute: the client's host (the gateway forwards it), else ours.
            var host = req.Header("x-forwarded-host") ?? req.Header("host") ?? "localhost";
            var proto = req.Header("x-forwarded-proto") ?? "http";
            var request = new FissionHttpRequest(req.Method, proto + "://" + host + req.Target, rawHeaders, body);

            var query = new Dictionary<string, string>();
            var arguments = new Dictionary<string, object>();
            var q = req.Target.IndexOf('?');
            if (q >= 0)
            {
                foreach (var pair in req.Target.Substring(q + 1).Split('&'))
                {
                    if (pair.Length == 0) continue;
                    var eq = pair.IndexOf('=');
                    var key = Unescape(eq < 0 ? pair : pair.Substring(0, eq));
                    var value = eq < 0 ? "" : Unescape(pair.Substring(eq + 1));
                    if (!query.ContainsKey(key)) query[key] = value;
                    object prior;
                    arguments[key] = arguments.TryGetValue(key, out prior) ? prior + "," + value : value;
                }
            }
            string requestId;
            if (!headers.TryGetValue("x-request-id", out requestId) || requestId.Length == 0) requestId = Guid.NewGuid().ToString();
            return new FissionContext(arguments, SharedLogger, request)
            {
                Method = req.Method,
                Path = req.Path,
                Query = query,
                Headers = headers,
                Params = routeParams,
                RequestId = requestId,
                PackagePath = packagePath,
                Function = new FunctionRef { Namespace = fn.Namespace, Name = fn.Name, Revision = fn.Revision },
            };
        }

        private static string Unescape(string s)
        {
            try
            {
                return Uri.UnescapeDataString(s.Replace('+', ' '));
            }
            catch (Exception)
            {
                return s;
            }
        }

        /// <summary>A FissionResponse answers with its status and headers; otherwise the value is
        /// the body: string text/plain, byte[] application/octet-stream, null 204, else JSON.</summary>
        public static HttpResponse Answer(object result)
        {
            var response = result as FissionResponse;
            if (response == null) return Body(200, result, true);
            if (response.StatusCode < 200 || response.StatusCode > 599)
                throw new ResultError("status " + response.StatusCode + " is not between 200 and 599");
            var res = Body(response.StatusCode, response.Body, false);
            if (response.Headers != null)
            {
                foreach (var h in response.Headers)
                {
                    if (!ValidHeader(h.Key, h.Value)) throw new ResultError("header " + h.Key + " is not a valid HTTP header");
                    var lower = h.Key.ToLowerInvariant();
                    if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection") continue;
                    if (lower == "content-type") res.Headers.RemoveAll(x => x.Key == "Content-Type");
                    res.Set(h.Key, h.Value);
                }
            }
            return res;
        }

        private static HttpResponse Body(int status, object body, bool nullIsNoContent)
        {
            if (body == null)
                return new HttpResponse { Status = nullIsNoContent ? 204 : status };
            var text = body as string;
            if (text != null)
                return new HttpResponse { Status = status, Body = Encoding.UTF8.GetBytes(text) }.Set("Content-Type", "text/plain; charset=utf-8");
            var bytes = body as byte[];
            if (bytes != null)
                return new HttpResponse { Status = status, Body = bytes }.Set("Content-Type", "application/octet-stream");
            string json;
            try
            {
                json = FizzJson.Serialize(body);
            }
            catch (Exception e)
            {
                throw new ResultError("the return value cannot be sent: " + e.Message);
            }
            return new HttpResponse { Status = status, Body = Encoding.UTF8.GetBytes(json) }.Set("Content-Type", "application/json; charset=utf-8");
        }

        private static bool ValidHeader(string name, string value)
        {
            if (string.IsNullOrEmpty(name) || value == null) return false;
            foreach (var c in name) if (c <= ' ' || c >= 127 || c == ':') return false;
            foreach (var c in value) if (c == '\r' || c == '\n' || c == '\0') return false;
            return true;
        }
    }
}
