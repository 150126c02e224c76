// HTTP/1.1 on a plain stream: request heads, Content-Length and chunked bodies, responses with
// Content-Length. Written by hand (not HttpListener) because the contract needs the framing:
// answering 421/401/413 before a body is read, then closing or draining, and keep-alive.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Fizz.Dotnet
{
    /// <summary>One connection: a buffered reader of heads and bodies, and a response writer.</summary>
    internal sealed class HttpConnection
    {
        private const int MaxHeadBytes = 64 * 1024;
        private const int MaxHeaders = 200;
        private readonly Stream _stream;
        private readonly byte[] _buf = new byte[16 * 1024];
        private int _pos;
        private int _end;

        // The body of the current request.
        private HttpRequest _req;
        private long _remaining; // bytes left in the Content-Length body or the current chunk
        private bool _bodyDone;
        private bool _continueSent;

        public HttpConnection(Stream stream)
        {
            _stream = stream;
        }

        /// <summary>True once the current request's body has been read to its end.</summary>
        public bool BodyComplete { get { return _bodyDone; } }

        private bool Fill()
        {
            if (_pos == _end) { _pos = 0; _end = 0; }
            else if (_end == _buf.Length)
            {
                Buffer.BlockCopy(_buf, _pos, _buf, 0, _end - _pos);
                _end -= _pos;
                _pos = 0;
            }
            var n = _stream.Read(_buf, _end, _buf.Length - _end);
            if (n <= 0) return false;
            _end += n;
            return true;
        }

        /// <summary>A CRLF (or LF) terminated line as Latin-1; null at a clean end of stream.</summary>
        private string ReadLine(ref int budget)
        {
            var sb = (StringBuilder)null;
            for (;;)
            {
                for (var i = _pos; i < _end; i++)
                {
                    if (_buf[i] != (byte)'\n') continue;
                    var len = i - _pos;
                    budget -= len + 1;
                    if (budget < 0) throw new HttpError(431, "HEADERS_TOO_LARGE", "request head too large", true);
                    if (len > 0 && _buf[i - 1] == (byte)'\r') len--;
                    var part = Encoding.GetEncoding(28591).GetString(_buf, _pos, len);
                    _pos = i + 1;
                    return sb == null ? part : sb.Append(part).ToString();
                }
                var pending = _end - _pos;
                budget -= pending;
                if (budget < 0) throw new HttpError(431, "HEADERS_TOO_LARGE", "request head too large", true);
                if (sb == null) sb = new StringBuilder();
                sb.Append(Encoding.GetEncoding(28591).GetString(_buf, _pos, pending));
                _pos = _end;
                if (!Fill())
                {
                    if (sb.Length == 0) return null;
                    throw new HttpError(400, "BAD_REQUEST", "connection closed in the middle of a line", true);
                }
            }
        }

        /// <summary>The next request's head, or null when the client closed the connection.</summary>
        public HttpRequest ReadHead()
        {
            var budget = MaxHeadBytes;
            string line;
            do
            {
                line = ReadLine(ref budget);
                if (line == null) return null;
            } while (line.Length == 0); // tolerate blank lines between requests
            var parts = line.Split(' ');
            if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new HttpError(400, "BAD_REQUEST", "malformed request line", true);
            var req = new HttpRequest { Method = parts[0], Target = parts[1] };
            if (parts[2] == "HTTP/1.0") { req.Http10 = true; req.KeepAlive = false; }
            else if (parts[2] != "HTTP/1.1") throw new HttpError(505, "HTTP_VERSION_NOT_SUPPORTED", "HTTP/1.1 only", true);
            for (;;)
            {
                line = ReadLine(ref budget);
                if (line == null) throw new HttpError(400, "BAD_REQUEST", "connection closed in the request head", true);
                if (line.Length == 0) break;
                var colon = line.IndexOf(':');
                if (colon <= 0 || line[0] == ' ' || line[0] == '\t')
                    throw new HttpError(400, "BAD_REQUEST", "malformed header line", true);
                var name = line.Substring(0, colon);
                if (name.IndexOf(' ') >= 0 || name.IndexOf('\t') >= 0)
                    throw new HttpError(400, "BAD_REQUEST", "malformed header name", true);
                if (req.Headers.Count >= MaxHeaders) throw new HttpError(431, "HEADERS_TOO_LARGE", "too many headers", true);
                req.Headers.Add(new KeyValuePair<string, string>(name, line.Substring(colon + 1).Trim(' ', '\t')));
            }
            var te = req.Header("transfer-encoding");
            var cl = req.Header("content-length");
            if (te != null)
            {
                // Only "chunked" is supported; with both headers, the request is ambiguous (smuggling).
                if (!string.Equals(te.Trim(), "chunked", StringComparison.OrdinalIgnoreCase) || cl != null)
                    throw new HttpError(400, "BAD_REQUEST", "unsupported Transfer-Encoding", true);
                req.Chunked = true;
            }
            else if (cl != null)
            {
                long n;
                if (!long.TryParse(cl, System.Globalization.NumberStyles.None, null, out n))
                    throw new HttpError(400, "BAD_REQUEST", "invalid Content-Length", true);
                req.ContentLength = n;
            }
            var connection = req.Header("connection");
            if (connection != null)
            {
                foreach (var token in connection.Split(','))
                {
                    var t = token.Trim();
                    if (t.Equals("close", StringComparison.OrdinalIgnoreCase)) req.KeepAlive = false;
                    else if (t.Equals("keep-alive", StringComparison.OrdinalIgnoreCase) && req.Http10) req.KeepAlive = true;
                }
            }
            var expect = req.Header("expect");
            req.ExpectContinue = expect != null && expect.Equals("100-continue", StringComparison.OrdinalIgnoreCase);
            _req = req;
            _continueSent = false;
            _bodyDone = !req.HasBody;
            _remaining = req.Chunked ? 0 : Math.Max(0, req.ContentLength);
            _inChunk = false;
            return req;
        }

        private bool _inChunk;

        /// <summary>Reads body bytes; 0 at the end of the body. Throws HttpError on a malformed or
        /// cut-short body.</summary>
        public int ReadBody(byte[] dest, int offset, int count)
        {
            if (_bodyDone || count == 0) return 0;
            if (_req.ExpectContinue && !_continueSent)
            {
                _continueSent = true;
                var cont = Encoding.ASCII.GetBytes("HTTP/1.1 100 Continue\r\n\r\n");
                _stream.Write(cont, 0, cont.Length);
            }
            if (_req.Chunked && !_inChunk)
            {
                var budget = 4096;
                var sizeLine = ReadLine(ref budget);
                if (sizeLine == null) throw CutShort();
                var semi = sizeLine.IndexOf(';');
                if (semi >= 0) sizeLine = sizeLine.Substring(0, semi);
                long size;
                if (!long.TryParse(sizeLine.Trim(), System.Globalization.NumberStyles.AllowHexSpecifier, null, out size) || size < 0)
                    throw new HttpError(400, "BAD_REQUEST", "malformed chunk size", true);
                if (size == 0)
                {
                    // Trailers, then the empty line.
                    for (;;)
                    {
                        var trailer = ReadLine(ref budget);
                        if (trailer == null) throw CutShort();
                        if (trailer.Length == 0) break;
                    }
                    _bodyDone = true;
                    return 0;
                }
                _remaining = size;
                _inChunk = true;
            }
            if (_pos == _end && !Fill()) throw CutShort();
            var n = (int)Math.Min(Math.Min(count, _end - _pos), _remaining);
            Buffer.BlockCopy(_buf, _pos, dest, offset, n);
            _pos += n;
            _remaining -= n;
            if (_remaining == 0)
            {
                if (_req.Chunked)
                {
                    var budget = 16;
                    var crlf = ReadLine(ref budget);
                    if (crlf == null) throw CutShort();
                    if (crlf.Length != 0) throw new HttpError(400, "BAD_REQUEST", "malformed chunk", true);
                    _inChunk = false;
                }
                else
                {
                    _bodyDone = true;
                }
            }
            return n;
        }

        private static HttpError CutShort()
        {
            return new HttpError(400, "INVALID_BODY", "request body was cut short", true);
        }

        /// <summary>The whole body, refused with 413 past `limit` bytes (checked against
        /// Content-Length up front and against what arrives).</summary>
        public byte[] ReadAll(long limit)
        {
            if (_req.ContentLength > limit) throw TooLarge(limit);
            if (!_req.HasBody) return new byte[0];
            if (!_req.Chunked)
            {
                var body = new byte[_req.ContentLength];
                var got = 0;
                while (got < body.Length)
                {
                    var n = ReadBody(body, got, body.Length - got);
                    if (n == 0) throw CutShort();
                    got += n;
                }
                return body;
            }
            var ms = new MemoryStream();
            var chunk = new byte[16 * 1024];
            for (;;)
            {
                var n = ReadBody(chunk, 0, chunk.Length);
                if (n == 0) break;
                if (ms.Length + n > limit) throw TooLarge(limit);
                ms.Write(chunk, 0, n);
            }
            return ms.ToArray();
        }

        public static HttpError TooLarge(long limit)
        {
            return new HttpError(413, "PAYLOAD_TOO_LARGE", "request body exceeds " + limit + " bytes", true);
        }

        /// <summary>Discards the rest of the body if it is small, so the connection can serve the
        /// next request; false when it must be closed instead.</summary>
        public bool TryDiscardBody(long maxBytes)
        {
            if (_bodyDone) return true;
            if (!_req.Chunked && _remaining > maxBytes) return false;
            if (_req.ExpectContinue && !_continueSent) return false; // the client has not sent it
            var scratch = new byte[8192];
            long total = 0;
            try
            {
                for (;;)
                {
                    var n = ReadBody(scratch, 0, scratch.Length);
                    if (n == 0) return true;
                    total += n;
                    if (total > maxBytes) return false;
                }
            }
            catch (HttpError)
            {
                return false;
            }
        }

        public void Write(HttpResponse res, bool close)
        {
            var sb = new StringBuilder(256);
            sb.Append("HTTP/1.1 ").Append(res.Status).Append(' ').Append(Reason(res.Status)).Append("\r\n");
            foreach (var h in res.Headers) sb.Append(h.Key).Append(": ").Append(h.Value).Append("\r\n");
            var noBody = res.Status == 204 || res.Status == 304 || (res.Status >= 100 && res.Status < 200);
            if (!noBody) sb.Append("Content-Length: ").Append(res.Body.Length).Append("\r\n");
            if (close) sb.Append("Connection: close\r\n");
            sb.Append("\r\n");
            var head = Encoding.UTF8.GetBytes(sb.ToString());
            var isHead = _req != null && _req.Method == "HEAD";
            if (noBody || isHead || res.Body.Length == 0)
            {
                _stream.Write(head, 0, head.Length);
            }
            else if (res.Body.Length < 16 * 1024)
            {
                // One write: one TCP segment for small answers.
                var all = new byte[head.Length + res.Body.Length];
                Buffer.BlockCopy(head, 0, all, 0, head.Length);
                Buffer.BlockCopy(res.Body, 0, all, head.Length, res.Body.Length);
                _stream.Write(all, 0, all.Length);
            }
            else
            {
                _stream.Write(head, 0, head.Length);
                _stream.Write(res.Body, 0, res.Body.Length);
            }
            _stream.Flush();
        }

        public static string Reason(int status)
        {
            switch (status)
            {
                case 100: return "Continue";
                case 200: return "OK";
                case 201: return "Created";
                case 202: return "Accepted";
                case 204: return "No Content";
                case 301: return "Moved Permanently";
                case 302: return "Found";
                case 303: return "See Other";
                case 304: return "Not Modified";
                case 307: return "Temporary Redirect";
                case 308: return "Permanent Redirect";
                case 400: return "Bad Request";
                case 401: return "Unauthorized";
                case 403: return "Forbidden";
                case 404: return "Not Found";
                case 405: return "Method Not Allowed";
                case 409: return "Conflict";
                case 413: return "Payload Too Large";
                case 421: return "Misdirected Request";
                case 429: return "Too Many Requests";
                case 431: return "Request Header Fields Too Large";
                case 500: return "Internal Server Error";
                case 502: return "Bad Gateway";
                case 503: return "Service Unavailable";
                case 505: return "HTTP Version Not Supported";
                default: return "Status";
            }
        }
    }
}
